"""What the metrics callbacks share: :class:`~src.metrics.callback.SampleQuality` (images, toy
points) and :class:`~src.metrics.table_callback.TableMetrics` (table rows).

Both score every ``every_n_epochs`` validation epochs and at test; rank 0 scores and broadcasts,
every rank logs the same values (:meth:`ScoreCallback._publish`); each stage's protocol goes to the
loggers once (:meth:`ScoreCallback._log_protocol`); and a checkpoint or early stopping on one of
their scores must look only at the epochs that have it (:meth:`ScoreCallback._check_monitors`).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping

from src.data.base import GenerativeDataModule
from src.utils.errors import UserError
from src.utils.logging import RankedLogger


class ScoreCallback(pl.Callback):
    """Base of the metrics callbacks: subclasses define :meth:`evaluate` and :meth:`score_names`.

    Args:
        every_n_epochs: score at the end of every n-th validation epoch.
    """

    def __init__(self, every_n_epochs: int = 1) -> None:
        super().__init__()
        self.every_n_epochs = every_n_epochs
        # Per stage (and "audit"): how its scores were computed.
        self.protocol: dict[str, dict[str, Any]] = {}
        self._logged_protocol: dict[str, dict[str, Any]] = {}
        self._warned: set[str] = set()

    def evaluate(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> Any:
        raise NotImplementedError

    def score_names(self, datamodule: GenerativeDataModule) -> list[str]:
        """The scores logged at validation (without the ``val/`` prefix)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ Lightning hooks
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self.evaluate(trainer, pl_module, "val")

    @staticmethod
    def _datamodule(trainer: pl.Trainer) -> GenerativeDataModule:
        datamodule = getattr(trainer, "datamodule", None)
        if not isinstance(datamodule, GenerativeDataModule):
            raise UserError(
                "the metrics callback needs a GenerativeDataModule: pass datamodule= to fit/test."
            )
        return datamodule

    # ------------------------------------------------------------------ results
    def _publish(
        self,
        trainer: pl.Trainer,
        pl_module: Any,
        result: tuple[dict[str, float], dict[str, Any]] | None,
        record: str,
        prefix: str = "",
    ) -> dict[str, float]:
        """Broadcasts rank 0's ``(scores, protocol)``, logs each score as ``<prefix><name>`` on every
        rank, and records the protocol under ``record``. Every rank must call it."""
        # Every rank takes part in the broadcast; only rank 0 has something to send.
        scores, protocol = trainer.strategy.broadcast(result, src=0)
        for name, value in scores.items():
            # Identical on every rank already; a "max" sync keeps them exact (a mean could round).
            pl_module.log(f"{prefix}{name}", value, on_epoch=True, sync_dist=True, reduce_fx="max")
        self.protocol[record] = protocol
        self._log_protocol(trainer, record, protocol)
        return scores

    def _warn_once(self, log: RankedLogger, stage: str, warnings: list[str]) -> None:
        """Each protocol warning once per run, not at every validation."""
        for warning in warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                log.warning(f"{stage} scores: {warning}")

    # ------------------------------------------------------------------ checks and records
    def _check_monitors(self, trainer: pl.Trainer, datamodule: GenerativeDataModule) -> None:
        """A checkpoint or early stopping on one of these scores must look only at epochs that have it."""
        if self.every_n_epochs == 1:
            return
        names = {f"val/{name}" for name in self.score_names(datamodule)}
        for checkpoint in trainer.checkpoint_callbacks:
            monitor = getattr(checkpoint, "monitor", None)
            every = getattr(checkpoint, "_every_n_epochs", 1)
            if monitor in names and every % self.every_n_epochs:
                raise UserError(
                    f"the checkpoint monitor {monitor} is scored every metrics.every_n_epochs={self.every_n_epochs} "
                    f"epochs, but checkpoints are considered every {every}: set "
                    f"callbacks.model_checkpoint.every_n_epochs={self.every_n_epochs}."
                )
        for callback in trainer.callbacks:
            if isinstance(callback, EarlyStopping) and callback.monitor in names:
                # Lightning's EarlyStopping checks after every validation and fails where the score is missing.
                raise UserError(
                    f"early stopping on {callback.monitor} needs it at every validation, but it is scored every "
                    f"metrics.every_n_epochs={self.every_n_epochs} epochs: set metrics.every_n_epochs=1 "
                    "(or trainer.check_val_every_n_epoch to space validations instead)."
                )

    def _log_protocol(self, trainer: pl.Trainer, stage: str, protocol: dict[str, Any]) -> None:
        """Sends the protocol to the loggers once per stage (loggers write on rank 0 only)."""
        if self._logged_protocol.get(stage) == protocol:
            return
        self._logged_protocol[stage] = protocol
        flat = {
            f"protocol/{stage}/{k}": (v if isinstance(v, int | float | str) else str(v))
            for k, v in protocol.items()
        }
        for logger in trainer.loggers:
            logger.log_hyperparams(flat)
            # TensorBoard keeps hyperparameters only beside a metric (none here): the protocol goes
            # in as text, one entry per stage.
            if type(logger).__name__ == "TensorBoardLogger":
                text = "\n".join(f"    {k}: {v}" for k, v in flat.items())
                logger.experiment.add_text(f"protocol/{stage}", text, global_step=trainer.global_step)
