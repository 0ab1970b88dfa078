"""What the adversarial models share: the GANs (:mod:`src.models.gan`) and CTGAN
(:mod:`src.models.tabular.ctgan`).

:class:`AdversarialTraining` holds their update scheme, which the GAN module docstring describes:
one discriminator update per training step that ``trainer.global_step`` does not count
(:func:`step_without_counting`), every ``n_critic``-th step also a generator update (with the
discriminator frozen and, under ``privacy=dp``, the privacy engine paused), the learning-rate
schedules and the generator's moving average stepped after it, the run's gradient clipping on
both networks, and the critic's held-out scores (``<stage>/d_real``, ``d_fake``, ``d_margin``,
``d_acc``). Each model keeps what its losses, networks and data make its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch.core.optimizer import LightningOptimizer, do_nothing_closure
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

# The critic's scores at validation and test, logged as `<stage>/<name>`.
CRITIC_SCORES = ("d_real", "d_fake", "d_margin", "d_acc")


class AdversarialTraining:
    """Mixin of a :class:`~src.models.base.GenerativeModule` with manual optimization, a
    ``generator``, a ``discriminator``, an optional ``generator_ema`` (:func:`exponential_moving_average`),
    the factories ``optimizer_g`` / ``optimizer_d`` / ``scheduler_g`` / ``scheduler_d``, ``n_critic``
    and ``gradient_clip_val`` / ``gradient_clip_algorithm`` (handed over by ``src.runtime.build``).
    It comes first among the bases, so that its Lightning hooks are the ones that run."""

    # DDP. Each backward pass reaches one network only: the discriminator update scores fakes
    # generated without a graph, the generator update freezes the discriminator (toggled
    # optimizer). DDP's reducer with find_unused_parameters=False waits for a gradient of every
    # parameter and fails ("parameters that were not used in producing the loss"). Making every
    # parameter receive a gradient instead would cost a full backward pass through the generator
    # in every critic update (n_critic of them per generator update) plus the discriminator's
    # weight gradients in every generator update, all thrown away. The unused-parameter search
    # costs one traversal of the autograd graph per backward pass, so adversarial models declare
    # that they need it and `Hardware.prepare_model` switches it on for them only (VAEs keep False).
    needs_unused_parameter_search = True
    # Generator updates before which the moving average follows the generator (GanModule sets its own).
    ema_start = 0

    # ------------------------------------------------------------------ sampling
    @property
    def sampling_generator(self) -> nn.Module:
        """The generator behind ``sample``: the EMA average when enabled."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    # ------------------------------------------------------------------ updates
    def _generator_due(self) -> bool:
        """Whether this training step also updates the generator: every ``n_critic``-th real batch
        (``total_batch_idx`` counts the real batches of the whole fit and is restored on resume)."""
        return (self.trainer.fit_loop.epoch_loop.total_batch_idx + 1) % self.n_critic == 0

    def _discriminator_step(self, optimizer: LightningOptimizer, loss: Tensor) -> None:
        """Back-propagates the discriminator's objective, clips, and steps without counting a step."""
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self._clip(optimizer)
        step_without_counting(optimizer)

    def _private_discriminator_step(
        self, optimizer: LightningOptimizer, real_terms: Tensor, fake_terms: Tensor
    ) -> dict[str, Tensor]:
        """The DP-SGD step on the per-row terms of one batch of real and generated rows: Opacus clips
        each row's gradient of the summed terms (no clipping of the run's own here)."""
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(real_terms.sum() + fake_terms.sum())
        step_without_counting(optimizer)
        # Logged as the usual mean objective (the estimate a non-private run logs).
        loss_d = fake_terms.mean() + (real_terms.mean() if len(real_terms) else 0.0)
        return {"loss/d": loss_d.detach()}

    def _generator_step(
        self, optimizer: LightningOptimizer, generator_loss: Callable[[], Tensor]
    ) -> dict[str, Tensor]:
        """One generator update on the loss ``generator_loss()`` computes, then the schedules and the EMA.

        Toggling freezes the discriminator: the backward pass computes no gradients for its weights
        (nor, under privacy=dp, per-example ones: the generator's update is not a private step).
        """
        paused = self.privacy_engine.paused() if self.private_training else contextlib.nullcontext()
        with self.toggled_optimizer(optimizer), paused:
            loss = generator_loss()
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            self._clip(optimizer)
            optimizer.step()
        for scheduler in self._schedulers():
            scheduler.step()
        self._update_ema()
        return {"loss/g": loss.detach()}

    def _clip(self, optimizer: LightningOptimizer) -> None:
        if self.gradient_clip_val:
            self.clip_gradients(optimizer, self.gradient_clip_val, self.gradient_clip_algorithm)

    def _schedulers(self) -> list[Any]:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return []
        return schedulers if isinstance(schedulers, list) else [schedulers]

    def _update_ema(self) -> None:
        if self.generator_ema is None:
            return
        if self.global_step < self.ema_start:
            # Restarting the average makes the next update a plain copy: before `ema_start` the
            # average follows the generator, so sampling never sees stale initial weights.
            self.generator_ema.n_averaged.zero_()
        self.generator_ema.update_parameters(self.generator)

    def configure_optimizers(self) -> list[dict[str, Any]]:
        assert self.generator is not None and self.discriminator is not None
        # Order matters: `self.optimizers()` unpacks (generator, discriminator).
        configs = [
            self._make_optimizer(self.optimizer_g, self.generator.parameters(), self.scheduler_g),
            self._make_optimizer(
                self.optimizer_d, self.discriminator.parameters(), self.scheduler_d, private=True
            ),
        ]
        return [config if isinstance(config, dict) else {"optimizer": config} for config in configs]

    def private_updates_per_step(self) -> int:
        return self.n_critic

    # ------------------------------------------------------------------ evaluation
    def _log_critic_scores(self, stage: str, real_out: Tensor, fake_out: Tensor) -> None:
        """The critic's mean output on held-out real and on generated data, their difference, and
        its ranking accuracy (:func:`discriminator_accuracy`)."""
        self.log(f"{stage}/d_real", real_out.mean(), sync_dist=True)
        self.log(f"{stage}/d_fake", fake_out.mean(), sync_dist=True)
        self.log(f"{stage}/d_margin", real_out.mean() - fake_out.mean(), sync_dist=True)
        self.log(f"{stage}/d_acc", discriminator_accuracy(real_out, fake_out), sync_dist=True)

    def validation_scores(self) -> list[str]:
        return list(CRITIC_SCORES)


def discriminator_accuracy(real_out: Tensor, fake_out: Tensor) -> Tensor:
    """Share of (held-out real, generated) pairs the critic ranks the right way round: the ROC AUC
    of its outputs as a real-vs-generated classifier, ``P(D(real) > D(fake))`` with ties counted half.

    A ranking, not a cut at a fixed output: only the non-saturating loss gives an output a meaning
    on its own (logit 0). A hinge or Wasserstein critic can drift as a whole, and a cut at 0 read
    real -2.40 and fake -4.73 as 0.5, "fooled", for a critic that tells every pair apart. Nor is a
    threshold fitted on the scored batch (optimistic on small batches). 0.5: the critic cannot tell
    them apart; 1: every real image above every sample; below 0.5: it prefers the samples. Per
    evaluation batch (O(n log n)); the logged value is its mean over batches.
    """
    real, fake = real_out.detach().flatten().float(), fake_out.detach().flatten().float()
    ordered = fake.sort().values
    below = torch.searchsorted(ordered, real, right=False)  # fakes strictly under each real output
    not_above = torch.searchsorted(ordered, real, right=True)  # ... plus the ties
    return (below + not_above).double().sum().float() / (2 * len(real) * len(fake))


def exponential_moving_average(module: nn.Module, decay: float) -> AveragedModel:
    """A frozen EMA copy of ``module`` (parameters and buffers) that DDP does not synchronise."""
    average = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    return average.requires_grad_(False)


def step_without_counting(optimizer: LightningOptimizer) -> None:
    """``optimizer.step()`` that does not advance ``trainer.global_step``.

    In manual optimization Lightning counts every ``LightningOptimizer.step`` as a global step,
    through the ``_on_before_step``/``_on_after_step`` hooks its loop installs for the training
    step. Discriminator updates are not steps here (global_step = generator updates), so they
    run with those hooks switched off. ``tests/test_gan.py`` checks the count, so a change in
    Lightning's mechanism shows up as a failing test rather than a silently different schedule.
    """
    hooks = optimizer._on_before_step, optimizer._on_after_step
    optimizer._on_before_step = optimizer._on_after_step = do_nothing_closure
    try:
        optimizer.step()
    finally:
        optimizer._on_before_step, optimizer._on_after_step = hooks
