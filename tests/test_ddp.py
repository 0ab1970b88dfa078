"""DDP with two gloo processes on the CPU (``hardware=ddp_cpu``), through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

TINY = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.enable_progress_bar=false",
    "data.batch_size=16",
    "data.eval_batch_size=32",
    "metrics.n_fake_val=64",
    "metrics.n_fake_test=64",
    "metrics.chunk_size=32",
]


def test_vae_trains_with_two_processes_and_leaves_one_run_dir(tmp_path: Path, data_root: Path) -> None:
    code, _, err = run_cli(
        "src.train",
        "hardware=ddp_cpu",
        "model.width=8",
        "model.latent_dim=4",
        "model.iwae_samples=3",
        "data.source=files",
        f"paths.data_dir={data_root}",
        f"paths.log_dir={tmp_path}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        *TINY,
    )
    assert code == 0, err[-3000:]
    runs = list((tmp_path / "train" / "runs").iterdir())
    assert len(runs) == 1
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    # 3 batches per epoch on each of the 2 ranks, 2 epochs: the step count is per process.
    assert metrics["global_step"] == 6
    assert "test/elbo" in metrics and "test/nll_iwae" in metrics
    assert (runs[0] / "checkpoints" / "last.ckpt").is_file()
    assert (runs[0] / ".hydra" / "config.yaml").is_file()
