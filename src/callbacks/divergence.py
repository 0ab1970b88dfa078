"""Stops a run whose loss became NaN or infinite, keeping the last good checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from src.callbacks.checkpoint import last_checkpoint
from src.utils.errors import TrainingFailure


class DivergenceGuard(pl.Callback):
    """Watches the training losses; on a non-finite value raises :class:`TrainingFailure`.

    Each step only keeps its (detached, scalar) losses: no device op and no host sync per step. Every
    ``check_every_n_steps`` steps, and always before validation and at the end of an epoch, i.e.
    before any checkpoint can be written, one reduction per loss over the kept values is read, so
    ``last.ckpt`` is never written from diverged weights.
    The decision is agreed across processes (any rank diverged -> every rank stops at the same
    point), so no DDP worker waits in a collective for a rank that has left.
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        super().__init__()
        self.check_every_n_steps = max(1, int(check_every_n_steps))
        self._pending: dict[str, list[Tensor]] = {}
        self._batches = 0
        # Checks that found a non-finite loss (recorded as `divergence_events` in metrics.json; the
        # first one stops the run, so a finished run has 0 and a diverged one 1).
        self.events = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Three tiny tensor ops per step (isfinite, not, or) cost ~0.1 ms on a CPU, as much as the
        # rest of this framework's callbacks together (`make bench`, profiler table); a list append
        # costs microseconds.
        for name, value in _losses(outputs).items():
            self._pending.setdefault(name, []).append(value.detach())
        self._batches += 1
        if self._batches % self.check_every_n_steps == 0:
            self._check(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: pl.Trainer) -> None:
        bad = sorted(
            name
            for name, values in self._pending.items()
            if not bool(torch.isfinite(torch.cat([value.reshape(1) for value in values])).all())
        )
        self._pending = {}
        if not trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            return
        self.events += 1
        which = ", ".join(bad) if bad else "a loss on another process"
        last = last_checkpoint(trainer) or "none written yet"
        raise TrainingFailure(
            f"training diverged: {which} became NaN or infinite by step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}). Last good checkpoint: {last}. Lower the learning rate or set "
            "trainer.gradient_clip_val."
        )


def _losses(outputs: Any) -> dict[str, Tensor]:
    if isinstance(outputs, Tensor):
        return {"loss": outputs}
    if isinstance(outputs, Mapping):
        return {str(k): v for k, v in outputs.items() if isinstance(v, Tensor) and v.numel() == 1}
    return {}
