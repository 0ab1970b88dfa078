"""Variational autoencoder (Kingma & Welling 2014), beta-VAE and conditional VAE (Sohn et al. 2015).

Scores, all in nats per image:

* ``val/elbo``: the evidence lower bound ``E_q[log p(x|z)] - KL(q(z|x) || p(z))`` with beta = 1,
  a lower bound on ``log p(x)`` (higher is better);
* ``val/recon``: ``-E_q[log p(x|z)]``; ``val/kl``: the KL term;
* ``val/loss``: the training objective ``recon + beta_t * kl`` (beta_t includes KL warm-up);
* ``test/nll_iwae``: ``-log p(x)`` estimated with the importance-weighted bound (Burda et al.
  2016) with ``iwae_samples`` samples (lower is better).

With the Bernoulli likelihood and ``binarize=true`` the pixels are binarised by sampling
(dynamically in training, with a fixed seed per batch in evaluation), so the figures are
likelihoods of binary images, comparable with the literature on binarised MNIST.
The Gaussian likelihood gives a continuous density on ``[0, 1]`` pixels instead.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from src.models.base import GenerativeModule, OptimizerFactory, SchedulerFactory
from src.models.networks.conv import ConvDecoder, ConvEncoder
from src.models.networks.layers import Norm, one_hot
from src.utils.errors import UserError
from src.utils.types import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

LOG_2PI = math.log(2 * math.pi)
EVAL_SCORES = ("loss", "elbo", "recon", "kl")
# test/nll_iwae samples in a fast_dev_run (`debug=fdr`), whose scores are not results.
FAST_DEV_RUN_IWAE_SAMPLES = 2


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` per row, in closed form (float32 at least)."""
    mean, logvar = mean.float(), logvar.float()
    return 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar).sum(dim=1)


class VaeModule(GenerativeModule):
    """Convolutional VAE sized from the data; ``conditional=true`` makes it a cVAE."""

    input_range = (0.0, 1.0)
    membership_attack = "elbo"
    monitor_candidates = ("val/elbo",)

    def __init__(
        self,
        *,
        image_size: PositiveInt | None,
        channels: PositiveInt | None,
        num_classes: NonNegativeInt = 0,
        conditional: bool = False,
        latent_dim: PositiveInt = 16,
        width: PositiveInt = 32,
        norm: Norm = "batch",
        beta: NonNegativeFloat = 1.0,
        kl_warmup_steps: NonNegativeInt = 0,
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        binarize: bool = True,
        gaussian_sigma: PositiveFloat | None = None,
        iwae_samples: PositiveInt = 50,
        eval_seed: int = 0,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        monitor: str | None = "auto",
        monitor_mode: Literal["min", "max"] | None = None,
        point_dim: PositiveInt | None = None,
        name: str = "vae",
    ) -> None:
        super().__init__(
            image_size=image_size,
            channels=channels,
            num_classes=num_classes,
            conditional=conditional,
            monitor=monitor,
            monitor_mode=monitor_mode,
            point_dim=point_dim,
            name=name,
        )
        self._require_images()
        if binarize and likelihood != "bernoulli":
            raise UserError(
                f"model.binarize=true applies to the Bernoulli likelihood: set model.binarize=false for model.likelihood={likelihood}."
            )
        self.latent_dim = latent_dim
        self.beta = beta
        self.kl_warmup_steps = kl_warmup_steps
        self.likelihood = likelihood
        self.binarize = binarize
        self.iwae_samples = iwae_samples
        self.eval_seed = eval_seed
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

        assert image_size is not None and channels is not None
        self.encoder = ConvEncoder(image_size, channels, width, norm, model=name)
        head_in = self.encoder.out_features + self.num_classes
        self.to_mean = nn.Linear(head_in, latent_dim)
        self.to_logvar = nn.Linear(head_in, latent_dim)
        self.decoder = ConvDecoder(
            image_size, channels, latent_dim + self.num_classes, width, norm, model=name
        )
        if likelihood == "gaussian" and gaussian_sigma is None:
            # One learned noise scale for all pixels (the "sigma-VAE" of Rybkin et al. 2021).
            self.log_sigma = nn.Parameter(torch.zeros(()))
        else:
            self.register_buffer("log_sigma", torch.tensor(math.log(gaussian_sigma or 1.0)), persistent=False)
        self.scores = nn.ModuleDict(
            {stage: nn.ModuleDict({name: MeanMetric() for name in EVAL_SCORES}) for stage in ("val", "test")}
        )
        self.test_nll_iwae = MeanMetric()

    def validation_scores(self) -> list[str]:
        return list(EVAL_SCORES)

    # ------------------------------------------------------------------ model
    def encode(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        if self.num_classes:
            h = torch.cat([h, one_hot(y, self.num_classes, h.dtype)], dim=1)
        return self.to_mean(h), self.to_logvar(h)

    def decode(self, z: Tensor, y: Tensor | None) -> Tensor:
        """Decoder logits (pre-sigmoid)."""
        if self.num_classes:
            z = torch.cat([z, one_hot(y, self.num_classes, z.dtype)], dim=1)
        return self.decoder(z)

    def log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        """``log p(x | z)`` summed over pixels; ``logits`` may carry extra leading sample dims."""
        return self.pixel_log_likelihood(x, logits).sum(tuple(range(-3, 0)))

    def pixel_log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        """``log p(x_i | z)`` per pixel (summing gives :meth:`log_likelihood`)."""
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        mean = torch.sigmoid(logits)
        log_sigma = self.log_sigma.float()
        return -0.5 * ((x - mean) / log_sigma.exp()) ** 2 - log_sigma - 0.5 * LOG_2PI

    # ------------------------------------------------------------------ inpainting
    inpaint_methods = ("mwg", "pseudo_gibbs")
    inpaint_defaults: ClassVar[dict[str, Any]] = {"steps": 200}

    @torch.no_grad()
    def _inpaint(
        self,
        x: Tensor,
        mask: Tensor,
        labels: Tensor | None,
        generator: torch.Generator | None,
        method: str,
        steps: int | None,
        **options,
    ) -> Tensor:
        """Conditional sampling of the missing pixels given the observed ones (Mattei & Frellsen 2018).

        A Markov chain over ``(z, x_missing)``: ``z`` is proposed from the encoder ``q(z | x_hat)``
        (``x_hat`` = observed pixels + the current missing ones) and, for ``mwg``
        (Metropolis-within-Gibbs), accepted with probability ``min(1, w(z') / w(z))``,
        ``w(z) = p(x_obs | z) p(z) / q(z | x_hat)``, which makes ``p(z, x_miss | x_obs)`` the
        chain's stationary law; ``pseudo_gibbs`` (Rezende et al. 2014) accepts every proposal.
        Then ``x_miss ~ p(x_miss | z)``. The fill is the mean of ``p(x_miss | z)`` over the second
        half of the chain (the posterior predictive mean, which minimises the expected squared error).
        """
        if options:
            raise UserError(
                f"{', '.join(sorted(options))} do not apply to model={self.model_name} (VAE inpainting takes method and steps)."
            )
        steps = steps or self.inpaint_defaults["steps"]
        observed = (~mask).float()
        x_hat = torch.where(mask, torch.full_like(x, 0.5), x)
        z = z_logits = None
        total = torch.zeros_like(x)
        kept = 0
        for step in range(steps):
            mean, logvar = self.encode(x_hat, labels)
            std = torch.exp(0.5 * logvar)
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            proposal = mean + std * eps
            logits = self.decode(proposal, labels).float()
            log_w_new = self._importance_log_weight(x, observed, proposal, logits, mean, std)
            if z is None or method == "pseudo_gibbs":
                accept = torch.ones(len(x), dtype=torch.bool, device=x.device)
            else:
                # w(z) is re-evaluated under the current q(. | x_hat), which changed with x_miss.
                log_w_old = self._importance_log_weight(x, observed, z, z_logits, mean, std)
                u = torch.rand(len(x), generator=generator, device=x.device)
                accept = torch.log(u) < (log_w_new - log_w_old)
            if z is None:
                z, z_logits = proposal, logits
            else:
                z = torch.where(accept[:, None], proposal, z)
                z_logits = torch.where(accept[:, None, None, None], logits, z_logits)
            probs = torch.sigmoid(z_logits)
            if self.likelihood == "bernoulli":
                draw = torch.bernoulli(probs, generator=generator)
            else:
                noise = torch.randn(probs.shape, generator=generator, device=probs.device)
                draw = (probs + noise * self.log_sigma.float().exp()).clamp(0, 1)
            x_hat = torch.where(mask, draw.to(x.dtype), x)
            if step >= steps // 2:
                total += probs
                kept += 1
        return total / max(1, kept)

    def _importance_log_weight(
        self, x: Tensor, observed: Tensor, z: Tensor, logits: Tensor, mean: Tensor, std: Tensor
    ) -> Tensor:
        """``log p(x_obs | z) + log p(z) - log q(z | x_hat)`` per image."""
        log_px = (self.pixel_log_likelihood(x, logits) * observed).sum((1, 2, 3))
        log_prior = (-0.5 * z.float() ** 2).sum(1)
        log_q = (-0.5 * ((z - mean) / std).float() ** 2 - torch.log(std.float())).sum(1)
        return log_px + log_prior - log_q

    def generate_from_latent(self, z: Tensor, labels: Tensor | None) -> Tensor:
        return torch.sigmoid(self.decode(z, labels))

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Posterior-mean reconstructions of model-range images, in ``[0, 1]``."""
        mean, _ = self.encode(x, y)
        return torch.sigmoid(self.decode(mean, y)).float()

    # ------------------------------------------------------------------ objective
    def likelihood_targets(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """The pixels the likelihood scores: binarised by sampling when ``binarize`` is on."""
        if not self.binarize:
            return x
        return torch.bernoulli(x.float(), generator=generator).to(x.dtype)

    def elbo_terms(
        self, x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Per-image ``(log p(x|z), KL(q(z|x) || p(z)))`` with one posterior sample (reparameterised)."""
        mean, logvar = self.encode(x, y)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        logits = self.decode(mean + std * eps, y)
        log_px = self.log_likelihood(x, logits.float())
        return log_px, gaussian_kl(mean, logvar)

    def current_beta(self) -> float:
        if self.kl_warmup_steps == 0:
            return self.beta
        return self.beta * min(1.0, self.global_step / self.kl_warmup_steps)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        if len(x) == 0:
            # Poisson sampling (privacy=dp) can draw an empty batch. The private update is then the
            # noise alone: zero gradients here, and the privacy engine hands the optimizer an empty
            # set of per-example gradients (a forward pass over no images would fail in Opacus' hooks).
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        log_px, kl = self.elbo_terms(self.likelihood_targets(x, None), y, None)
        beta = self.current_beta()
        per_example = -log_px + beta * kl
        loss = per_example.mean()
        self.log_step_scalars(
            {"train/loss": loss, "train/recon": -log_px.mean(), "train/kl": kl.mean(), "train/beta": beta},
            batch_idx,
            prog_bar=("train/loss",),
            batch_size=len(x),
        )
        # DP-SGD clips the gradient of each example's own loss: Opacus' per-sample gradients are those
        # of a summed loss; its optimizer divides the noisy sum by the expected batch size.
        return per_example.sum() if self.private_training else loss

    def _evaluate(self, stage: str, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        # A fixed generator per batch makes evaluation deterministic: same binarisation and
        # posterior samples on every epoch and in `src.eval`.
        generator = torch.Generator(device=x.device).manual_seed(self.eval_seed + batch_idx)
        x = self.likelihood_targets(x, generator)
        log_px, kl = self.elbo_terms(x, y, generator)
        values = {"elbo": log_px - kl, "recon": -log_px, "kl": kl, "loss": -log_px + self.current_beta() * kl}
        scores = self.scores[stage]
        for name, value in values.items():
            scores[name].update(value)
            self.log(f"{stage}/{name}", scores[name], prog_bar=name == "elbo")
        if stage == "test":
            self.test_nll_iwae.update(self.iwae_nll(x, y, self._test_iwae_samples(), generator))
            self.log("test/nll_iwae", self.test_nll_iwae)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate("val", batch, batch_idx)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate("test", batch, batch_idx)

    def _test_iwae_samples(self) -> int:
        """``iwae_samples``, except under Lightning's ``fast_dev_run`` (``debug=fdr``): that run checks
        that every stage works on one batch and its scores mean nothing, while 50 samples of one
        batch took ~7 s of an 18-26 s debug run on the 2-core CPU (`experiments/benchmarks`, start-up)."""
        if self.trainer.fast_dev_run:
            return min(self.iwae_samples, FAST_DEV_RUN_IWAE_SAMPLES)
        return self.iwae_samples

    @torch.no_grad()
    def iwae_nll(
        self,
        x: Tensor,
        y: Tensor | None,
        samples: int,
        generator: torch.Generator | None = None,
        chunk: int = 10,
    ) -> Tensor:
        """``-log p(x)`` per image from the ``samples``-sample importance-weighted bound."""
        mean, logvar = self.encode(x, y)
        std = torch.exp(0.5 * logvar)
        log_weights = []
        for start in range(0, samples, chunk):
            k = min(chunk, samples - start)
            eps = torch.randn((k, *mean.shape), generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + std * eps
            log_q = (-0.5 * eps.float() ** 2 - torch.log(std.float()) - 0.5 * LOG_2PI).sum(-1)
            log_prior = (-0.5 * z.float() ** 2 - 0.5 * LOG_2PI).sum(-1)
            labels = None if y is None else y.repeat(k)
            logits = self.decode(z.flatten(0, 1), labels).float().unflatten(0, (k, len(x)))
            log_weights.append(self.log_likelihood(x, logits) + log_prior - log_q)
        log_w = torch.cat(log_weights)
        return -(torch.logsumexp(log_w, dim=0) - math.log(samples))

    def configure_optimizers(self):
        return self._make_optimizer(
            self.optimizer_factory, self.parameters(), self.scheduler_factory, private=True
        )

    # ------------------------------------------------------------------ privacy and membership
    def private_networks(self) -> dict[str, nn.Module]:
        return {
            "encoder": self.encoder,
            "to_mean": self.to_mean,
            "to_logvar": self.to_logvar,
            "decoder": self.decoder,
        }

    def private_part(self) -> str:
        return "the whole model (encoder and decoder), trained with DP-SGD"

    @torch.no_grad()
    def membership_score(self, x: Tensor, y: Tensor | None, samples: int = 4, seed: int = 0) -> Tensor:
        """Per-example ELBO in nats (mean of ``samples`` seeded draws): a model fits its training
        images better than unseen ones, so a high ELBO suggests a member."""
        generator = torch.Generator(device=x.device).manual_seed(seed)
        total = torch.zeros(len(x), device=x.device)
        for _ in range(samples):
            log_px, kl = self.elbo_terms(self.likelihood_targets(x, generator), y, generator)
            total += (log_px - kl).float()
        return total / samples
