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

    Each step's check stays on the device (no host sync); the flags are read every
    ``check_every_n_steps`` steps and always before validation and at the end of an epoch, i.e.
    before any checkpoint can be written, so ``last.ckpt`` is never written from diverged weights.
    The decision is agreed across processes (any rank diverged -> every rank stops at the same
    point), so no DDP worker waits in a collective for a rank that has left.
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        super().__init__()
        self.check_every_n_steps = max(1, int(check_every_n_steps))
        self._flags: dict[str, Tensor] = {}
        self._batches = 0
        # Checks that found a non-finite loss (recorded as `divergence_events` in metrics.json; the
        # first one stops the run, so a finished run has 0 and a diverged one 1).
        self.events = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        for name, value in _losses(outputs).items():
            bad = ~torch.isfinite(value.detach())
            self._flags[name] = bad if name not in self._flags else self._flags[name] | bad
        self._batches += 1
        if self._batches % self.check_every_n_steps == 0:
            self._check(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: pl.Trainer) -> None:
        bad = sorted(name for name, flag in self._flags.items() if bool(flag))
        self._flags = {}
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
