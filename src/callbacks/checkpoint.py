"""``last.ckpt`` after every training epoch, independent of the monitored checkpoint."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Writes ``<dirpath>/last.ckpt`` every ``every_n_epochs`` training epochs.

    Lightning's ``save_last`` rewrites ``last.ckpt`` only when the monitored checkpoint is saved,
    so a run whose score stopped improving would resume (``ckpt_path=auto``) from a stale step.
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
