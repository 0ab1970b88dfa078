"""A callback that records when each training step ends, for the benchmarks.

Added to a real `src.train` run from the command line:
``+callbacks.step_timer._target_=experiments.benchmarks.timing.StepTimer +callbacks.step_timer.path=t.json``
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import lightning.pytorch as pl
import torch


class StepTimer(pl.Callback):
    """Writes ``{"first_step_wall": epoch seconds, "step_ends": [perf_counter...], "peak_rss_mb": ...}``."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = Path(path)
        self.first_step_wall: float | None = None
        self.step_ends: list[float] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        if self.first_step_wall is None:
            self.first_step_wall = time.time()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        self.step_ends.append(time.perf_counter())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank == 0:
            self.path.write_text(json.dumps(timing_record(self.first_step_wall, self.step_ends)))


def timing_record(first_step_wall: float | None, step_ends: list[float]) -> dict:
    record = {
        "first_step_wall": first_step_wall,
        "step_ends": step_ends,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if torch.cuda.is_available():
        record["peak_device_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return record


def steady_throughput(step_ends: list[float], batch_size: int, warmup: int) -> float:
    """Images per second over the steps after ``warmup``."""
    window = step_ends[warmup:]
    if len(window) < 2:
        raise ValueError(f"need more than {warmup + 1} timed steps, got {len(step_ends)}")
    return batch_size * (len(window) - 1) / (window[-1] - window[0])
