"""Generative adversarial networks: DCGAN, WGAN-GP, SNGAN (hinge + spectral norm), conditional GAN.

One LightningModule with manual optimization; the loss (``model.loss``), the penalties
(``gp_weight``, ``r1_weight``), the networks (``arch``, widths, norms, ``spectral_norm``) and the
update schedule (``n_critic``) come from the config (``conf/model/{dcgan,wgan_gp,sngan,cgan}.yaml``).

What a step is
    Each training step consumes one real batch and makes one discriminator update; every
    ``n_critic``-th step also makes one generator update. ``trainer.global_step`` counts
    *generator updates* (the "iteration" of BigGAN and StudioGAN): ``trainer.max_steps``, the
    learning-rate schedules (stepped once per generator update, both networks), ``ema_start``
    and the step numbers of checkpoints and sample grids are in generator updates. Settings that
    count batches (``limit_train_batches``, ``val_check_interval``, ``log_every_n_steps`` and the
    loggers' x axis) count real batches, i.e. discriminator updates.

Noise
    Latents and fake labels come from a ``torch.Generator`` seeded from the run's seed, the
    global rank and the global step at which ``fit`` starts: DDP processes never draw the same
    ``z``, and resuming from a checkpoint is reproducible.

EMA
    With ``ema=true`` an exponential moving average of the generator (weights and batch-norm
    statistics, ``torch.optim.swa_utils.AveragedModel``) is updated after every generator
    update from ``ema_start`` on (before it, the average follows the generator). ``sample`` --
    hence sample grids, metrics, ``src.eval`` and exports -- uses the average. It is a
    submodule, so it is in every checkpoint's ``state_dict`` (keys ``generator_ema.*``).

Augmentation
    ``augment=diffaugment`` (DiffAugment) or ``augment=ada`` (adaptive discriminator augmentation,
    ``ada_*`` options) transforms every batch the discriminator scores in training -- real and
    generated, in its update and in the generator's -- with differentiable, per-image operations
    (``src.models.augment``); labels are unchanged. Gradient penalties are taken on the augmented
    batches: WGAN-GP's interpolates lie between the augmented real and the augmented generated
    images the critic scored, R1 is at the augmented reals. Evaluation, sampling, inpainting and
    membership scores see the networks unaugmented. ADA's probability is adjusted from the
    discriminator's outputs on real images, which under ``privacy=dp`` would be a use of the
    training data outside the accounted mechanism: that combination is refused (DiffAugment's
    random draws do not depend on the data, so it trains privately).

Gradient clipping
    Lightning's Trainer refuses ``gradient_clip_val`` with manual optimization; the run's
    ``trainer.gradient_clip_val`` is handed to this module instead (``src.runtime.build``) and
    applied to both networks' gradients before each update.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor, nn

from src.models.adversarial import AdversarialTraining, exponential_moving_average
from src.models.adversarial import discriminator_accuracy as discriminator_accuracy  # re-exported
from src.models.augment import AdaptiveAugment, AugmentKind, build_augment
from src.models.base import GenerativeModule, OptimizerFactory, SchedulerFactory
from src.models.losses import GanLoss, GradientPenalty, R1Penalty
from src.models.networks.gan import GanArch, GanNetworkSpec, build_gan_networks
from src.models.networks.layers import Norm
from src.utils.errors import UserError
from src.utils.types import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

log = logging.getLogger(__name__)


class GanModule(AdversarialTraining, GenerativeModule):
    """GAN with pluggable loss, penalties, networks and generator EMA (see module docstring).

    Training logs ``loss/d`` (the discriminator's whole objective, penalties included),
    ``loss/g`` (at generator updates) and each penalty term (``loss/gp``, ``loss/r1``); the
    training step returns them as detached scalars for the divergence guard. With ``augment=ada``
    it also logs the augmentation probability, ``train/ada_p``. Evaluation steps log ``<stage>/d_real`` and ``<stage>/d_fake``, the mean critic output on
    held-out real data and on generated samples, ``<stage>/d_margin``, their difference, and
    ``<stage>/d_acc``, the share of (real, generated) pairs the discriminator ranks the right way
    round (:func:`~src.models.adversarial.discriminator_accuracy`); sample-quality scores
    (``val/fid``, ``val/rkl``) come from the ``metrics`` callback. The update scheme, EMA and
    clipping are :class:`~src.models.adversarial.AdversarialTraining`'s, which CTGAN shares.
    """

    membership_attack = "discriminator"
    # `monitor: auto`: sample quality when the metrics score images, the mode statistics on toy
    # 2-D data, and with `metrics=none` the discriminator's held-out accuracy.
    monitor_candidates = ("val/fid", "val/rkl", "val/d_acc")

    def __init__(
        self,
        *,
        image_size: PositiveInt | None,
        channels: PositiveInt | None,
        num_classes: NonNegativeInt = 0,
        conditional: bool = False,
        point_dim: PositiveInt | None = None,
        arch: GanArch = "dcgan",
        latent_dim: PositiveInt = 128,
        g_width: PositiveInt = 64,
        d_width: PositiveInt = 64,
        g_norm: Norm = "batch",
        d_norm: Norm = "batch",
        spectral_norm: bool = False,
        mlp_width: PositiveInt = 256,
        mlp_depth: PositiveInt = 3,
        loss: GanLoss,
        gp_weight: NonNegativeFloat = 0.0,
        r1_weight: NonNegativeFloat = 0.0,
        n_critic: PositiveInt = 1,
        ema: bool = False,
        ema_decay: Fraction = 0.999,
        ema_start: NonNegativeInt = 0,
        augment: AugmentKind = "none",
        ada_target: Fraction = 0.6,
        ada_interval: PositiveInt = 4,
        ada_kimg: PositiveFloat = 500.0,
        ada_xflip: bool = False,
        ada_rotate: bool = False,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        scheduler_g: SchedulerFactory | None = None,
        scheduler_d: SchedulerFactory | None = None,
        eval_seed: int = 0,
        monitor: str | None = "auto",
        monitor_mode: Literal["min", "max"] | None = None,
        name: str = "gan",
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
        self.automatic_optimization = False
        penalties = [GradientPenalty(gp_weight)] if gp_weight else []
        penalties += [R1Penalty(r1_weight)] if r1_weight else []
        self._check_combination(loss, penalties, g_norm, d_norm, spectral_norm)
        self.latent_dim = latent_dim
        self.loss = loss
        self.penalties = penalties
        self.n_critic = n_critic
        self.ema_start = ema_start
        self.eval_seed = eval_seed
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        self.scheduler_g, self.scheduler_d = scheduler_g, scheduler_d
        # Handed over from `trainer.gradient_clip_val` by src.runtime.build (see module docstring).
        self.gradient_clip_val: float | None = None
        self.gradient_clip_algorithm: Literal["norm", "value"] = "norm"
        self.noise_generator: torch.Generator | None = None

        self.generator, self.discriminator = build_gan_networks(
            GanNetworkSpec(
                arch=arch,
                latent_dim=latent_dim,
                num_classes=self.num_classes,
                g_width=g_width,
                d_width=d_width,
                g_norm=g_norm,
                d_norm=d_norm,
                spectral_norm=spectral_norm,
                mlp_width=mlp_width,
                mlp_depth=mlp_depth,
                image_size=image_size,
                channels=channels,
                point_dim=point_dim,
                model=name,
            )
        )
        self.generator_ema = exponential_moving_average(self.generator, ema_decay) if ema else None
        self.augment = augment
        # No parameters; ADA's probability is in its state dict (key `augmenter._extra_state`).
        self.augmenter = build_augment(
            augment,
            data_kind=self.data_kind,
            channels=channels,
            model=name,
            ada_target=ada_target,
            ada_interval=ada_interval,
            ada_kimg=ada_kimg,
            ada_xflip=ada_xflip,
            ada_rotate=ada_rotate,
        )
        if augment == "auto":
            log.info(
                f"model.augment=auto: {'diffaugment' if self.augmenter is not None else 'none (2-D points)'}"
            )

    def _check_combination(
        self, loss: GanLoss, penalties: list[Any], g_norm: Norm, d_norm: Norm, spectral_norm: bool
    ) -> None:
        name = self.model_name
        if self.num_classes and g_norm != "batch":
            raise UserError(
                f"model={name} is conditional: its generator takes the class through conditional batch norm, "
                f"so model.g_norm={g_norm} would ignore the label. Set model.g_norm=batch."
            )
        if penalties and d_norm == "batch":
            which = ", ".join(f"model.{p.name}_weight" for p in penalties)
            raise UserError(
                f"model={name}: gradient penalties ({which}) act on each sample's input gradient, which batch "
                "norm in the critic mixes across the batch: set model.d_norm=layer (or none)."
            )
        if loss.lipschitz_critic and not (spectral_norm or any(p.name == "gp" for p in penalties)):
            raise UserError(
                f"model.loss={type(loss).__name__} needs a Lipschitz critic, or the critic's outputs grow without "
                "bound: set model.gp_weight>0 (WGAN-GP) or model.spectral_norm=true."
            )

    # ------------------------------------------------------------------ sampling
    @property
    def uses_ema(self) -> bool:
        return self.generator_ema is not None

    def generate_from_latent(self, z: Tensor, labels: Tensor | None) -> Tensor:
        return self.sampling_generator(z, labels)

    # ------------------------------------------------------------------ inpainting
    inpaint_methods = ("latent",)
    inpaint_defaults: ClassVar[dict[str, Any]] = {
        "steps": 300,
        "restarts": 4,
        "lr": 0.05,
        "prior_weight": 0.003,
    }

    def _inpaint(
        self,
        x: Tensor,
        mask: Tensor,
        labels: Tensor | None,
        generator: torch.Generator | None,
        method: str,
        steps: int | None,
        restarts: int | None = None,
        lr: float | None = None,
        prior_weight: float | None = None,
    ) -> Tensor:
        """Semantic inpainting by latent optimisation (Yeh et al. 2017).

        Finds ``z`` minimising the context loss, the mean absolute error on the observed pixels,
        plus ``prior_weight`` times the discriminator's prior loss ``softplus(-D(G(z)))`` (the
        non-saturating form of Yeh et al.'s ``log(1 - D(G(z)))``: it keeps ``G(z)`` looking real)
        and a weak Gaussian prior ``|z|^2 / (2 * latent_dim)``; Adam on ``z`` for ``steps`` steps,
        from ``restarts`` random starts per image, keeping the start with the lowest context loss.
        """
        defaults = self.inpaint_defaults
        steps = steps or defaults["steps"]
        restarts = restarts or defaults["restarts"]
        lr = lr or defaults["lr"]
        prior_weight = defaults["prior_weight"] if prior_weight is None else prior_weight
        n = len(x)
        observed = (~mask).float().repeat(restarts, 1, 1, 1)
        target = x.float().repeat(restarts, 1, 1, 1)
        y = labels.repeat(restarts) if labels is not None else None
        z = torch.randn(restarts * n, self.latent_dim, generator=generator, device=x.device).requires_grad_(
            True
        )
        optimizer = torch.optim.Adam([z], lr=lr)
        networks = (self.sampling_generator, self.discriminator)
        grads = [p.requires_grad for net in networks for p in net.parameters()]
        for net in networks:
            net.requires_grad_(False)
        try:
            with torch.enable_grad(), torch.inference_mode(False):
                for _ in range(steps):
                    fake = self.sampling_generator(z, y).float()
                    context = ((fake - target).abs() * observed).sum((1, 2, 3)) / observed.sum(
                        (1, 2, 3)
                    ).clamp_min(1)
                    prior = torch.nn.functional.softplus(-self.discriminator(fake, y).float().flatten())
                    loss = context + prior_weight * prior + (z**2).sum(1) / (2 * self.latent_dim)
                    optimizer.zero_grad(set_to_none=True)
                    loss.sum().backward()
                    optimizer.step()
        finally:
            for p, flag in zip((p for net in networks for p in net.parameters()), grads):
                p.requires_grad_(flag)
        with torch.no_grad():
            fake = self.sampling_generator(z, y).float()
            context = ((fake - target).abs() * observed).sum((1, 2, 3)).view(restarts, n)
            best = context.argmin(0)
            return fake.view(restarts, n, *fake.shape[1:])[best, torch.arange(n, device=x.device)]

    def compile_targets(self) -> list[nn.Module]:
        return [self.generator, self.discriminator]

    # ------------------------------------------------------------------ training
    def on_train_start(self) -> None:
        # Lightning seeds every DDP process alike; the global rank makes each draw its own latents,
        # and the step at which this fit starts makes a resumed run reproducible.
        entropy = [torch.initial_seed(), self.global_rank, self.global_step]
        seed = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
        self.noise_generator = torch.Generator(device=self.device).manual_seed(seed)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        real, labels = batch
        labels = labels if self.num_classes else None
        optimizer_g, optimizer_d = self.optimizers()
        logs = self._discriminator_update(optimizer_d, real, labels)
        if self._generator_due():
            logs.update(self._generator_update(optimizer_g, len(real)))
        scalars: dict[str, Tensor | float] = dict(logs)
        if isinstance(self.augmenter, AdaptiveAugment):
            scalars["train/ada_p"] = self.augmenter.p
        self.log_step_scalars(scalars, batch_idx, prog_bar=("loss/d", "loss/g"))
        return logs

    def _augment(self, x: Tensor) -> Tensor:
        """``model.augment`` applied to a batch the discriminator is about to score in training."""
        return x if self.augmenter is None else self.augmenter(x, self.noise_generator)

    def _adapt(self, real_out: Tensor, fake_out: Tensor) -> None:
        """ADA: records the signs of the critic's outputs on the real batch and, every
        ``ada_interval`` discriminator updates, moves the augmentation probability (summed across
        processes, so every process keeps the same ``p``). A Wasserstein critic has no fixed zero:
        its outputs are centred at the midpoint of the mean real and mean fake output."""
        augmenter = self.augmenter
        if not isinstance(augmenter, AdaptiveAugment):
            return
        real_out = real_out.detach().float()
        if self.loss.lipschitz_critic:
            real_out = real_out - (real_out.mean() + fake_out.detach().float().mean()) / 2
        augmenter.observe(real_out)
        if augmenter.due:
            augmenter.adjust(lambda stats: self.trainer.strategy.reduce(stats, reduce_op="sum"))

    def _discriminator_update(
        self, optimizer: LightningOptimizer, real: Tensor, labels: Tensor | None
    ) -> dict[str, Tensor]:
        if self.private_training:
            return self._private_discriminator_update(optimizer, real, labels)
        n = len(real)
        with torch.no_grad():
            fake_labels = self.sample_labels(n, self.noise_generator)
            fake = self.generator(self.sample_latents(n, self.noise_generator), fake_labels)
        real, fake = self._augment(real), self._augment(fake)
        real_out = self.discriminator(real, labels)
        fake_out = self.discriminator(fake, fake_labels)
        loss = self.loss.discriminator(real_out, fake_out)
        # Few scalars per step: each `self.log` call has a fixed Lightning cost, comparable to a toy MLP
        # step (see experiments/benchmarks).
        logs: dict[str, Tensor] = {}
        for penalty in self.penalties:
            # Interpolates between real and fake samples are scored with the real labels; with
            # model.augment, both are the augmented batches the critic scored above.
            term = penalty(lambda x: self.discriminator(x, labels), real, fake, self.noise_generator)
            logs[f"loss/{penalty.name}"] = term
            loss = loss + term
        self._discriminator_step(optimizer, loss)
        self._adapt(real_out, fake_out)
        logs["loss/d"] = loss
        return {key: value.detach() for key, value in logs.items()}

    def _private_discriminator_update(
        self, optimizer: LightningOptimizer, real: Tensor, labels: Tensor | None
    ) -> dict[str, Tensor]:
        """One DP-SGD discriminator update (``privacy=dp``; the argument is in ``src.privacy``).

        Real and generated samples go through the critic as one batch, one row each, so that the
        optimizer clips every row's gradient on its own; the number of fakes is fixed (the expected
        batch size), so adding or removing one training example changes the summed gradient by one
        clipped row, whatever the Poisson batch drew.
        """
        m = self.privacy_engine.expected_batch_size
        with torch.no_grad():
            fake_labels = self.sample_labels(m, self.noise_generator)
            fake = self.generator(self.sample_latents(m, self.noise_generator), fake_labels)
        both_labels = None if labels is None else torch.cat([labels, fake_labels])
        # DiffAugment draws each row's transform on its own: no row depends on another.
        out = self.discriminator(self._augment(torch.cat([real, fake.to(real.dtype)])), both_labels)
        real_terms, fake_terms = self.loss.discriminator_terms(out[: len(real)], out[len(real) :])
        return self._private_discriminator_step(optimizer, real_terms, fake_terms)

    def _generator_update(self, optimizer: LightningOptimizer, n: int) -> dict[str, Tensor]:
        def loss() -> Tensor:
            labels = self.sample_labels(n, self.noise_generator)
            fake = self.generator(self.sample_latents(n, self.noise_generator), labels)
            return self.loss.generator(self.discriminator(self._augment(fake), labels))

        return self._generator_step(optimizer, loss)

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, stage: str, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        real, labels = batch
        labels = labels if self.num_classes else None
        # Fixed noise per batch: the same fakes at every validation and in `src.eval`.
        generator = torch.Generator(device=real.device).manual_seed(self.eval_seed + batch_idx)
        fake = self._generate(len(real), labels, generator)
        real_out = self.discriminator(real, labels).float()
        fake_out = self.discriminator(fake, labels).float()
        self._log_critic_scores(stage, real_out, fake_out)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate("val", batch, batch_idx)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate("test", batch, batch_idx)

    # ------------------------------------------------------------------ privacy and membership
    def private_networks(self) -> dict[str, nn.Module]:
        # Asked by the privacy engine's checks only, before training starts.
        if isinstance(self.augmenter, AdaptiveAugment):
            raise UserError(
                "privacy=dp with model.augment=ada: ADA adjusts its augmentation probability from the "
                "discriminator's outputs on training images, a use of the data the privacy accounting does not "
                "cover. Use model.augment=diffaugment (data-independent, per-image) or model.augment=none."
            )
        return {"discriminator": self.discriminator}

    def private_part(self) -> str:
        return (
            "the discriminator, trained with DP-SGD; the generator sees data only through it "
            "(private by post-processing)"
        )

    @torch.no_grad()
    def membership_score(self, x: Tensor, y: Tensor | None) -> Tensor:
        """The discriminator's logit (LOGAN, Hayes et al. 2019): an overfit critic scores its
        training images as more real than unseen ones."""
        return self.discriminator(x, y if self.num_classes else None).float()
