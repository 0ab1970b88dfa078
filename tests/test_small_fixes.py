"""Small fixes of issue #27 that have no better home: library warnings, comparison plots, .gitignore,
and the run record of an interrupted command."""

from __future__ import annotations

import os
import signal
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
HOOK_WARNING = "Full backward hook is firing when gradients are computed"


def test_the_backward_hook_warning_of_private_runs_shows_once(monkeypatch, caplog) -> None:
    import logging

    from src.privacy import engine

    monkeypatch.setattr(engine, "_backward_hook_warning_said", False)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        for _ in range(2):  # two private networks hooked, two steps each
            network = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
            engine.DifferentialPrivacy(noise_multiplier=1.0)._hook({"discriminator": network})
            for _ in range(2):
                # The input needs no gradient, as images: torch's warning fires in every backward pass.
                network(torch.ones(4, 2)).sum().backward()
                # The accountant's catch_warnings blocks between steps (they defeat a "once" filter).
                with warnings.catch_warnings():
                    pass
    assert not [w for w in caught if HOOK_WARNING in str(w.message)]
    assert sum(HOOK_WARNING in record.getMessage() for record in caplog.records) == 1


def test_example_output_folders_of_the_readme_are_ignored_by_git() -> None:
    lines = (ROOT / ".gitignore").read_text().splitlines()
    readme = (ROOT / "README.md").read_text()
    for folder in ("synthetic", "filled", "inpainted"):
        assert f"out_dir={folder}/" in readme
        assert f"/{folder}/" in lines


# ------------------------------------------------------------------------------ SIGTERM / SIGINT
@pytest.fixture
def default_signals():
    """As in a shell's foreground process: default dispositions. A pytest-xdist worker ignores SIGINT,
    and interruptible() leaves a signal that is ignored or owned by another handler alone."""
    outer = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for s, handler in outer.items():
        signal.signal(s, handler)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_any_command_as_interrupted(
    tmp_path: Path, signum: int, code: int, default_signals: None
) -> None:
    from omegaconf import OmegaConf

    from src.runtime.run import read_metrics_json, run_task

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def task(cfg):
        try:
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler raises as soon as the signal arrives
        except Exception:  # an `except Exception` in the way must not swallow it
            pass
        raise AssertionError("the signal did not stop the task")

    with pytest.raises(SystemExit) as stopped:
        run_task(task, OmegaConf.create({"paths": {"output_dir": str(tmp_path)}}))
    assert stopped.value.code == code
    metrics = read_metrics_json(tmp_path)
    assert metrics["status"] == "interrupted"
    assert metrics["reason"] == f"stopped by {signal.Signals(signum).name} (signal {int(signum)})"
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the previous handlers are back


def test_training_stopped_by_sigterm_saves_last_ckpt_at_the_batch_boundary(
    make_cfg, monkeypatch, default_signals: None
) -> None:
    from src.models.vae import VaeModule
    from src.runtime.run import read_metrics_json, run_task
    from src.train import train
    from tests.conftest import FAST_VAE

    original = VaeModule.training_step

    def step(self, batch, batch_idx):
        if batch_idx == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # mid-step: the step still completes
        return original(self, batch, batch_idx)

    monkeypatch.setattr(VaeModule, "training_step", step)
    cfg = make_cfg("train", [*FAST_VAE, "data.source=files", "metrics=none", "trainer.max_epochs=2"])
    with pytest.raises(SystemExit) as stopped:
        run_task(train, cfg)
    assert stopped.value.code == 143
    out = Path(cfg.paths.output_dir)
    metrics = read_metrics_json(out)
    assert metrics["status"] == "interrupted" and "SIGTERM" in metrics["reason"]
    assert f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}" in metrics["reason"]
    # Batches 0 and 1 of the first epoch (the interrupted one completed), before any epoch-end save.
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2
