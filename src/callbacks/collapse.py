"""Says when a run's samples collapse, at the epoch it happens; optionally stops the run.

Two signs, read after each validation (after the metrics callback has scored it):

* the monitored score (``model.monitor``, e.g. ``val/fid``) has been worse than its best by more
  than ``tolerance`` (relative) for ``patience`` evaluations in a row: a GAN that has left its best
  state and is not coming back (a DCGAN that collapses after epoch 19 reads val FID 139 -> 528);
* the verdict's diversity check fails at this validation after it passed at an earlier one
  (recall / coverage / IS fell far below what real held-out images get).

Each is a WARNING at that epoch and an entry of ``metrics.json["warnings"]`` (``collapse:``),
with the epoch of the best checkpoint. With ``stop=true`` (``callbacks.collapse_guard.stop``,
off by default) the run ends there; ``checkpoints/best.ckpt`` still holds the best state, and
the test scores are that checkpoint's.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl

from src.utils.errors import UserError
from src.utils.logging import get_logger

log = get_logger(__name__)


class CollapseGuard(pl.Callback):
    """Args:
    monitor: the score to watch; ``None`` takes the checkpoint callback's monitor and mode.
    mode: ``min`` or ``max`` for a ``monitor`` given here (the checkpoint's follows the table of scores).
    patience: evaluations in a row worse than the best before it warns (and stops).
    tolerance: how much worse than the best counts, relative to the best (0.25: 25 % worse).
    stop: end the run at the first warning (the best checkpoint is kept).
    """

    def __init__(
        self,
        monitor: str | None = None,
        mode: Literal["min", "max"] | None = None,
        patience: int = 3,
        tolerance: float = 0.25,
        stop: bool = False,
    ) -> None:
        super().__init__()
        if monitor and mode is None:
            raise UserError(
                f"callbacks.collapse_guard.monitor={monitor} needs callbacks.collapse_guard.mode=min or max."
            )
        self.monitor = monitor
        self.mode = mode
        self.patience = max(1, int(patience))
        self.tolerance = float(tolerance)
        self.stop = stop
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.worse_in_a_row = 0
        self._diversity_passed = False
        self.events: list[dict[str, Any]] = []
        self.protocol: dict[str, Any] = {}

    # Lightning keeps callback state in checkpoints: a resumed run continues the count.
    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "worse_in_a_row": self.worse_in_a_row,
            "diversity_passed": self._diversity_passed,
            "events": self.events,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")
        self.best_epoch = state_dict.get("best_epoch")
        self.worse_in_a_row = int(state_dict.get("worse_in_a_row", 0))
        self._diversity_passed = bool(state_dict.get("diversity_passed", False))
        self.events = list(state_dict.get("events", []))
        self._record()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        found = [*self._score_signs(trainer, epoch), *self._verdict_signs(trainer, epoch)]
        for text in found:
            self.events.append({"epoch": epoch, "warning": text})
            log.warning(f"collapse: {text}")
        self._record()
        if found and self.stop:
            log.warning(
                f"callbacks.collapse_guard.stop=true: stopping at epoch {epoch}; checkpoints/best.ckpt holds "
                f"epoch {self.best_epoch}"
            )
            trainer.should_stop = True

    def _monitor(self, trainer: pl.Trainer) -> tuple[str | None, str | None]:
        if self.monitor:
            return self.monitor, self.mode
        checkpoint = trainer.checkpoint_callback
        if checkpoint is None:
            return None, None
        return getattr(checkpoint, "monitor", None), getattr(checkpoint, "mode", None)

    def _score_signs(self, trainer: pl.Trainer, epoch: int) -> list[str]:
        name, mode = self._monitor(trainer)
        value = trainer.callback_metrics.get(name) if name else None
        if value is None or mode not in ("min", "max"):
            return []
        value = float(value)
        if not math.isfinite(value):
            return []
        higher = mode == "max"
        if self.best is None or (value > self.best if higher else value < self.best):
            self.best, self.best_epoch, self.worse_in_a_row = value, epoch, 0
            return []
        margin = self.tolerance * max(abs(self.best), 1e-12)
        worse = value < self.best - margin if higher else value > self.best + margin
        self.worse_in_a_row = self.worse_in_a_row + 1 if worse else 0
        if self.worse_in_a_row != self.patience:
            return []
        return [
            f"{name} has been more than {self.tolerance:.0%} worse than its best ({self.best:.4g} at epoch "
            f"{self.best_epoch}) for {self.patience} evaluations in a row (now {value:.4g} at epoch {epoch}): "
            f"the run is leaving its best state; checkpoints/best.ckpt holds epoch {self.best_epoch}."
        ]

    def _verdict_signs(self, trainer: pl.Trainer, epoch: int) -> list[str]:
        for callback in trainer.callbacks:
            verdict = (getattr(callback, "protocol", None) or {}).get("val", {}).get("verdict")
            if not verdict:
                continue
            diversity = verdict.get("diversity", {})
            if diversity.get("pass") is True:
                self._diversity_passed = True
            elif diversity.get("pass") is False and self._diversity_passed:
                self._diversity_passed = False  # one warning per fall, again if it recovers and falls
                failed = ", ".join(
                    f"{c['score']} {c['value']:.3g} against {c['reference']:.3g} for real images"
                    for c in diversity["checks"]
                    if not c["passed"]
                )
                return [f"the samples collapsed at epoch {epoch}: {failed} (diversity passed before)."]
        return []

    def _record(self) -> None:
        self.protocol = {
            "collapse": {
                "monitor": self.monitor,
                "patience": self.patience,
                "tolerance": self.tolerance,
                "stop": self.stop,
                "best_epoch": self.best_epoch,
                "events": self.events,
                "warnings": [event["warning"] for event in self.events],
            }
        }
