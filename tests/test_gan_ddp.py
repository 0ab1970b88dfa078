"""A GAN with two gloo processes on the CPU (``hardware=ddp_cpu``), through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

# WGAN-GP on ring8: the gradient penalty's double backward and n_critic=2 under DDP, with EMA.
GAN = [
    "hardware=ddp_cpu",
    "model=wgan_gp",
    "data=ring8",
    "data.n_train=4000",
    "data.batch_size=64",
    "model.n_critic=2",
    "model.mlp_width=32",
    "model.ema=true",
    "model.ema_decay=0.9",
    "model.monitor=null",
    "trainer.limit_train_batches=4",
    "trainer.max_steps=-1",  # epochs decide, also on resuming (README: "How long a GAN needs")
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "+callbacks.state_hashes._target_=tests.state_hashes.StateHashes",
    "+callbacks.state_hashes.dirpath=${paths.output_dir}/state_hashes",
]


def _run(tmp_path: Path, *args: str) -> Path:
    log_dir = tmp_path / f"logs{len(list(tmp_path.iterdir()))}"
    code, _, err = run_cli("src.train", *GAN, f"paths.log_dir={log_dir}", *args)
    assert code == 0, err[-3000:]
    (run,) = (log_dir / "train" / "runs").iterdir()
    return run


def _ranks(run: Path) -> list[dict]:
    return [json.loads((run / "state_hashes" / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_gan_trains_in_sync_on_two_processes_and_resumes(tmp_path: Path) -> None:
    run = _run(tmp_path, "trainer.max_epochs=1", "test=false")
    first, second = _ranks(run)
    # Gradients are synchronised: identical weights on both ranks after training ...
    assert first["end"] == second["end"]
    # ... both networks (and the average) were updated ...
    assert all(first["start"][name] != first["end"][name] for name in first["end"])
    assert set(first["end"]) == {"generator", "discriminator", "generator_ema"}
    # ... and the ranks drew different latents.
    assert first["noise_state"] != second["noise_state"]
    # 4 batches per rank, a generator update every 2nd: global_step counts generator updates.
    assert first["end_step"] == 2

    last = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False, map_location="cpu")
    assert checkpoint["global_step"] == 2
    assert len(checkpoint["optimizer_states"]) == 2
    assert all(state["state"] for state in checkpoint["optimizer_states"])
    assert any(key.startswith("generator_ema.") for key in checkpoint["state_dict"])

    saved = first["end"]
    resumed = _run(tmp_path, "trainer.max_epochs=2", f"ckpt_path={last}")
    first, second = _ranks(resumed)
    # Both networks and the EMA continue from the checkpoint, on every rank.
    assert first["start"] == second["start"] == saved
    assert first["start_step"] == 2 and first["end_step"] == 4
    assert first["end"] == second["end"]
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["global_step"] == 4
