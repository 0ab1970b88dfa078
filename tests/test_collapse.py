"""The collapse guard: a run leaving its best state, or whose samples collapse, is told so at that epoch."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from src.callbacks import CollapseGuard
from src.runtime.run import collect_warnings
from src.utils.errors import UserError


def _trainer(epoch: int, fid: float, verdict: dict | None = None) -> SimpleNamespace:
    metrics_callback = SimpleNamespace(protocol={"val": {"verdict": verdict}} if verdict else {})
    return SimpleNamespace(
        sanity_checking=False,
        current_epoch=epoch,
        callback_metrics={"val/fid": torch.tensor(fid)},
        checkpoint_callback=SimpleNamespace(monitor="val/fid", mode="min"),
        callbacks=[metrics_callback],
        should_stop=False,
    )


def test_a_score_worse_than_its_best_for_patience_evaluations_warns_and_stop_ends_the_run() -> None:
    # The DCGAN of the report: best val FID at epoch 1, then 3 evaluations far above it.
    fids = [139.0, 120.0, 135.0, 300.0, 400.0, 528.0]
    for stop in (False, True):
        guard = CollapseGuard(patience=3, tolerance=0.25, stop=stop)
        stopped_at = None
        for epoch, fid in enumerate(fids):
            trainer = _trainer(epoch, fid)
            guard.on_validation_end(trainer, None)
            if trainer.should_stop and stopped_at is None:
                stopped_at = epoch
        # 135 is worse than 120 but within 25 %: the count starts at 300 (epoch 3) and reaches 3 at epoch 5.
        assert [event["epoch"] for event in guard.events] == [5]
        assert (
            "val/fid has been more than 25% worse than its best (120 at epoch 1)"
            in guard.events[0]["warning"]
        )
        assert stopped_at == (5 if stop else None)
        warnings = collect_warnings(guard.protocol)
        assert (
            warnings == [f"collapse: {guard.events[0]['warning']}"]
            and guard.protocol["collapse"]["best_epoch"] == 1
        )


def test_diversity_failing_after_passing_is_a_collapse_and_state_survives_a_resume() -> None:
    passed = {"diversity": {"pass": True, "checks": []}}
    failed = {
        "diversity": {
            "pass": False,
            "checks": [{"score": "coverage", "value": 0.02, "reference": 0.95, "passed": False}],
        }
    }
    guard = CollapseGuard()
    guard.on_validation_end(_trainer(0, 100.0, failed), None)  # never passed yet: not a collapse
    guard.on_validation_end(_trainer(1, 90.0, passed), None)
    resumed = CollapseGuard()
    resumed.load_state_dict(guard.state_dict())
    resumed.on_validation_end(_trainer(2, 95.0, failed), None)
    assert [event["epoch"] for event in resumed.events] == [2]
    assert "coverage 0.02 against 0.95 for real images" in resumed.events[0]["warning"]


def test_a_monitor_without_its_mode_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"collapse_guard\.mode"):
        CollapseGuard(monitor="val/kid")
