"""TVAE (Xu et al. 2019): a variational autoencoder on mode-specific normalised rows.

As published: encoder and decoder are MLPs (128, 128, ReLU) around a 128-dimensional latent; the
decoder outputs one entry per encoded entry and a learned noise scale ``sigma`` per continuous
column. Loss per row: ``loss_factor`` (2) x reconstruction + KL, where the reconstruction is the
cross-entropy of every one-hot span (discrete columns and the modes of continuous ones) plus the
Gaussian negative log-likelihood of each ``alpha``, ``(alpha - tanh(out))^2 / (2 sigma^2) + log
sigma``, with ``sigma`` clamped to ``[0.01, 1]`` after every update. Adam (lr 1e-3, weight decay
1e-5). Sampling decodes ``z ~ N(0, I)``: ``alpha = tanh(out) + sigma * noise``, one-hot spans by
their largest output. Rows of given classes come from rejection sampling (:mod:`.base`).

Scores: ``val/loss`` (the objective, per row), ``val/recon`` and ``val/kl``, each a mean over the
split, with the modes drawn from their posterior by a fixed generator per batch.

``privacy=dp``: the whole model (encoder, decoder, the sigmas) is trained with DP-SGD. The sigmas
are the weight of a bias-free linear layer fed a constant 1, a layer whose per-example gradients
Opacus computes like any other's; the continuous columns use the schema's ranges (``min_max``).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from src.models.base import OptimizerFactory, SchedulerFactory
from src.models.tabular.base import TableModule
from src.models.vae import gaussian_kl
from src.utils.types import PositiveFloat, PositiveInt

EVAL_SCORES = ("loss", "recon", "kl")
SIGMA_RANGE = (0.01, 1.0)
SIGMA_INIT = 0.1


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (and after the last: heads come separately)."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class TvaeEncoder(nn.Module):
    def __init__(self, data_dim: int, hidden: list[int], latent_dim: int) -> None:
        super().__init__()
        self.body = mlp([data_dim, *hidden])
        width = hidden[-1] if hidden else data_dim
        self.to_mean = nn.Linear(width, latent_dim)
        self.to_logvar = nn.Linear(width, latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.to_mean(h), self.to_logvar(h)


class ColumnSigma(nn.Module):
    """A learned noise scale per continuous column, one row per example (see module docstring)."""

    def __init__(self, columns: int) -> None:
        super().__init__()
        self.scale = nn.Linear(1, columns, bias=False)
        nn.init.constant_(self.scale.weight, SIGMA_INIT)

    def forward(self, n: int, device: torch.device) -> Tensor:
        return self.scale(torch.ones(n, 1, device=device)).clamp(*SIGMA_RANGE)

    @torch.no_grad()
    def clamp_(self) -> None:
        self.scale.weight.clamp_(*SIGMA_RANGE)


class TvaeDecoder(nn.Module):
    def __init__(self, latent_dim: int, hidden: list[int], data_dim: int, continuous_columns: int) -> None:
        super().__init__()
        self.body = mlp([latent_dim, *hidden])
        self.out = nn.Linear(hidden[-1] if hidden else latent_dim, data_dim)
        self.sigma = ColumnSigma(continuous_columns)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Raw outputs ``(n, data_dim)`` and the per-column sigmas ``(n, continuous columns)``."""
        return self.out(self.body(z)), self.sigma(len(z), z.device)


class TvaeModule(TableModule):
    """TVAE (see module docstring). Args beyond :class:`TableModule`'s (``**table`` passes those on):

    latent_dim, encoder_dims, decoder_dims: the networks (published: 128, (128, 128), (128, 128)).
    loss_factor: weight of the reconstruction against the KL term (published: 2).
    optimizer, scheduler: partials of ``torch.optim`` classes.
    """

    membership_attack = "elbo"
    monitor_candidates = ("val/quality", "val/loss")

    def __init__(
        self,
        *,
        latent_dim: PositiveInt = 128,
        encoder_dims: tuple[PositiveInt, ...] = (128, 128),
        decoder_dims: tuple[PositiveInt, ...] = (128, 128),
        loss_factor: PositiveFloat = 2.0,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        name: str = "tvae",
        **table: Any,
    ) -> None:
        super().__init__(name=name, **table)
        self.latent_dim = latent_dim
        self.encoder_dims = list(encoder_dims)
        self.decoder_dims = list(decoder_dims)
        self.loss_factor = loss_factor
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.encoder: TvaeEncoder | None = None
        self.decoder: TvaeDecoder | None = None
        self.scores = nn.ModuleDict(
            {stage: nn.ModuleDict({n: MeanMetric() for n in EVAL_SCORES}) for stage in ("val", "test")}
        )

    def validation_scores(self) -> list[str]:
        return list(EVAL_SCORES)

    # ------------------------------------------------------------------ networks
    def build_networks(self) -> None:
        assert self.transformer is not None
        dim = self.transformer.output_dim
        self.encoder = TvaeEncoder(dim, self.encoder_dims, self.latent_dim)
        self.decoder = TvaeDecoder(self.latent_dim, self.decoder_dims, dim, len(self.transformer.alpha_spans))
        self.register_span_buffers()
        self.to(self.device)

    # ------------------------------------------------------------------ objective
    def reconstruction(self, data: Tensor, out: Tensor, sigma: Tensor) -> Tensor:
        """Per-row ``-log p(data | z)`` up to a constant: alpha Gaussian NLL + one-hot cross-entropy."""
        target = data[:, self.alpha_index]
        mean = torch.tanh(out[:, self.alpha_index])
        gaussian = ((target - mean) ** 2 / (2 * sigma**2) + torch.log(sigma)).sum(1)
        if not self.span_index.numel():
            return gaussian
        logits = out[:, self.span_index].masked_fill(~self.span_valid, -math.inf)
        hot = data[:, self.span_index].masked_fill(~self.span_valid, 0.0)
        log_probs = torch.log_softmax(logits, dim=2).masked_fill(~self.span_valid, 0.0)
        cross_entropy = -(hot * log_probs).sum((1, 2))
        return gaussian + cross_entropy

    def loss_terms(self, rows: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Per-row reconstruction and KL terms for raw rows (one posterior sample, reparameterised)."""
        assert self.transformer is not None and self.encoder is not None and self.decoder is not None
        data = self.transformer.transform(rows, generator=generator)
        mean, logvar = self.encoder(data)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        out, sigma = self.decoder(mean + torch.exp(0.5 * logvar) * eps)
        return self.reconstruction(data, out.float(), sigma.float()), gaussian_kl(mean, logvar)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        rows, _ = batch
        if len(rows) == 0:
            # An empty Poisson batch (privacy=dp): the update is the noise alone (as in src/models/vae.py).
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        recon, kl = self.loss_terms(rows, self.noise_generator)
        per_row = self.loss_factor * recon + kl
        loss = per_row.mean()
        self.log_step_scalars(
            {"train/loss": loss, "train/recon": recon.mean(), "train/kl": kl.mean()},
            batch_idx,
            prog_bar=("train/loss",),
            batch_size=len(rows),
        )
        # DP-SGD clips each row's own gradient: Opacus' per-sample gradients are those of a summed loss.
        return per_row.sum() if self.private_training else loss

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        assert self.decoder is not None
        self.decoder.sigma.clamp_()  # as published: sigma kept in [0.01, 1] after each update

    def _evaluate(self, stage: str, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        rows, _ = batch
        generator = torch.Generator(device=rows.device).manual_seed(self.eval_seed + batch_idx)
        recon, kl = self.loss_terms(rows, generator)
        values = {"loss": self.loss_factor * recon + kl, "recon": recon, "kl": kl}
        scores = self.scores[stage]
        for name, value in values.items():
            scores[name].update(value)
            self.log(f"{stage}/{name}", scores[name], prog_bar=name == "loss")

    def configure_optimizers(self):
        return self._make_optimizer(
            self.optimizer_factory, self.parameters(), self.scheduler_factory, private=True
        )

    # ------------------------------------------------------------------ sampling
    def generate_rows(self, n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor:
        assert self.transformer is not None and self.decoder is not None
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        out, sigma = self.decoder(z)
        out = out.float()
        noise = torch.randn(sigma.shape, generator=generator, device=self.device)
        out[:, self.alpha_index] = (torch.tanh(out[:, self.alpha_index]) + sigma.float() * noise).clamp(-1, 1)
        return self.transformer.inverse(out)

    def generate_from_latent(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """Rows decoded from latent codes, ``alpha`` without the sigma noise (a deterministic map)."""
        assert self.transformer is not None and self.decoder is not None
        out, _ = self.decoder(z)
        out = out.float()
        out[:, self.alpha_index] = torch.tanh(out[:, self.alpha_index])
        return self.transformer.inverse(out)

    # ------------------------------------------------------------------ privacy and membership
    def private_networks(self) -> dict[str, nn.Module]:
        self._require_built()
        assert self.encoder is not None and self.decoder is not None
        return {"encoder": self.encoder, "decoder": self.decoder}

    def private_part(self) -> str:
        return "the whole model (encoder, decoder and noise scales), trained with DP-SGD"

    @torch.no_grad()
    def membership_score(self, x: Tensor, y: Tensor | None, samples: int = 4, seed: int = 0) -> Tensor:
        """Minus the per-row objective (a negative ELBO up to constants), mean of ``samples`` seeded
        draws: a model fits its training rows better than unseen ones."""
        generator = torch.Generator(device=x.device).manual_seed(seed)
        total = torch.zeros(len(x), device=x.device)
        for _ in range(samples):
            recon, kl = self.loss_terms(x.float(), generator)
            total -= recon + kl
        return total / samples
