"""The run's validation scores over time, for the stability record in ``metrics.json``."""

from __future__ import annotations

import math
import statistics
from typing import Any

import lightning.pytorch as pl

from src.utils.types import PositiveInt


class ScoreHistory(pl.Callback):
    """Records every ``val/...`` number at the end of each validation (sanity checks excluded;
    a value exactly equal to the score's previous one counts once, see below).

    :meth:`spreads` gives each score's sample standard deviation over the run's last ``last_k``
    evaluations, whichever checkpoint was best: how much the score still moves at the end of
    training. The history is part of the callback's checkpoint state, so a resumed run keeps it;
    only a fit restores it (see :meth:`load_state_dict`).
    """

    def __init__(self, last_k: PositiveInt = 5) -> None:
        super().__init__()
        self.last_k = last_k
        self.history: dict[str, list[tuple[int, float]]] = {}
        self._stage: str | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Lightning calls `setup` before it restores callback states from a checkpoint.
        self._stage = stage

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        step = int(trainer.global_step)
        for name, value in trainer.callback_metrics.items():
            if not name.startswith("val/") or getattr(value, "numel", lambda: 1)() != 1:
                continue
            value = float(value)
            series = self.history.setdefault(name, [])
            # Lightning keeps a score in callback_metrics after the validation that logged it, so a
            # score computed every n-th validation (metrics.every_n_epochs) reappears unchanged in
            # between: an exact repeat of the last value is that stale copy, not a new evaluation.
            if not math.isfinite(value) or (series and (series[-1][0] == step or series[-1][1] == value)):
                continue
            series.append((step, value))

    def spreads(self) -> dict[str, float]:
        """``{name: std of its last k values}`` for every score evaluated at least twice."""
        out = {}
        for name, series in self.history.items():
            values = [value for _, value in series[-self.last_k :]]
            if len(values) >= 2:
                out[name] = statistics.stdev(values)
        return out

    def evaluations(self) -> dict[str, int]:
        """How many values each spread is computed from."""
        return {name: min(len(series), self.last_k) for name, series in self.history.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"history": {name: [list(point) for point in series] for name, series in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callback states for every `ckpt_path`, `trainer.test(ckpt_path=best)`
        # included: that would rewind the history to the best checkpoint's evaluations and make
        # the spread that of the evaluations before the best one. Only resuming a fit restores it.
        if self._stage not in (None, "fit"):
            return
        self.history = {
            name: [(int(step), float(value)) for step, value in series]
            for name, series in state_dict.get("history", {}).items()
        }
