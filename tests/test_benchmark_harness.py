"""The benchmark's reading of Lightning's profiler report (the figures themselves are never asserted)."""

from __future__ import annotations

import time

import pytest
from lightning.pytorch.profilers import SimpleProfiler

from experiments.benchmarks.training import parse_simple_profile


def test_the_profile_parser_reads_lightnings_simple_profiler_report() -> None:
    profiler = SimpleProfiler()
    checkpoint_hook = "[Callback]ModelCheckpoint{'monitor': None, 'mode': 'min'}.on_train_batch_end"
    for _ in range(3):
        with profiler.profile("run_training_batch"):
            time.sleep(0.002)
        with profiler.profile(checkpoint_hook):
            pass
    rows = parse_simple_profile(profiler.summary())
    calls, total = rows["run_training_batch"]
    assert calls == 3 and total == pytest.approx(
        sum(profiler.recorded_durations["run_training_batch"]), rel=1e-3
    )
    # The callback's state dict is dropped from its name; its calls are kept.
    assert rows["[Callback]ModelCheckpoint.on_train_batch_end"][0] == 3
    assert rows["Total"][0] == 6
