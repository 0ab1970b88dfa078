"""``last.ckpt`` after every training epoch, independent of the monitored checkpoint, and at the
batch where SIGTERM or SIGINT stopped a fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from src.utils import signals
from src.utils.logging import get_logger

log = get_logger(__name__)


class LastCheckpoint(ModelCheckpoint):
    """Writes ``<dirpath>/last.ckpt`` every ``every_n_epochs`` training epochs.

    Lightning's ``save_last`` rewrites ``last.ckpt`` only when the monitored checkpoint is saved,
    so a run whose score stopped improving would resume (``ckpt_path=auto``) from a stale step.

    Interrupts: while fitting, a first SIGTERM / SIGINT is deferred to the end of the current
    batch (:mod:`src.utils.signals`), where the weights, optimizers and step count agree, and
    ``last.ckpt`` is written there (Lightning's checkpoints save nothing on an exception). An
    interrupt that struck mid-step (a second signal) leaves the previous ``last.ckpt`` as it was.
    """

    def __init__(self, dirpath: str, every_n_epochs: int = 1) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="last",
            monitor=None,
            save_top_k=1,
            every_n_epochs=every_n_epochs,
            enable_version_counter=False,
        )
        self._batches_saved = -1

    @property
    def state_key(self) -> str:
        # Distinct from an unmonitored `model_checkpoint` with the same schedule: Lightning
        # refuses two checkpoint callbacks with one state key.
        return self._generate_state_key(role="last", every_n_epochs=self._every_n_epochs)

    def _should_skip_saving_checkpoint(self, trainer: pl.Trainer) -> bool:
        # Lightning skips a save when `global_step` has not moved since the last one. For GANs
        # `global_step` counts generator updates: an epoch with fewer real batches than
        # `n_critic` makes none, yet trained the discriminator. Keyed on real batches instead,
        # every epoch leaves its last.ckpt and the same state is never written twice.
        from lightning.pytorch.trainer.states import TrainerFn

        return (
            bool(trainer.fast_dev_run)
            or trainer.state.fn != TrainerFn.FITTING
            or trainer.sanity_checking
            or self._batches_saved == _real_batches(trainer)
        )

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._batches_saved = _real_batches(trainer)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            signals.set_deferring(True)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        if stage == "fit":
            signals.set_deferring(False)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        signals.raise_if_interrupted()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        if trainer.state.fn == TrainerFn.FITTING:
            signals.raise_if_interrupted()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Only an interrupt between batches (ours, or Lightning's own SIGTERM check) leaves a state
        # worth resuming; a failure (a diverged loss) or a mid-step interrupt does not.
        between_batches = getattr(exception, "at_boundary", False) or isinstance(exception, SIGTERMException)
        if not between_batches or self._should_skip_saving_checkpoint(trainer):
            return
        self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
        log.warning(
            f"interrupted: the state after {_real_batches(trainer)} training batches is in {self.best_model_path}"
        )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        # A run stopped by max_steps mid-epoch: its final state is the one to resume or re-score.
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))


def _real_batches(trainer: pl.Trainer) -> int:
    """Training batches seen by this fit (resumed runs count on from the checkpoint)."""
    return trainer.fit_loop.epoch_loop.total_batch_idx


def last_checkpoint(trainer: pl.Trainer) -> str:
    """Path of the newest ``last.ckpt`` any checkpoint callback wrote, or ``""``."""
    for callback in trainer.checkpoint_callbacks:
        for path in (getattr(callback, "last_model_path", ""), getattr(callback, "best_model_path", "")):
            if path and Path(path).name == "last.ckpt":
                return path
    return ""
