"""Scores are the same, bit for bit, with one process and with two (``hardware=ddp_cpu``).

On CPUs some BLAS kernels (a linear layer's GEMM, for one) sum in an order that depends on the
number of threads, and Lightning gives each DDP process ``cores / processes`` threads unless
``OMP_NUM_THREADS`` is set. Both runs here use one thread, so what is compared is what the
framework controls: which samples are drawn, with which seeds, and how they are gathered and
ordered. (Unpinned, the two runs differ by ~2e-7 relative on this test's KID; on GPUs the thread
count plays no part.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

SCORES = [
    "fid",
    "kid",
    "is",
    "precision",
    "recall",
    "density",
    "coverage",
    "authenticity",
    "nn_train",
    "nn_heldout",
    "outside_share",
    "copy_share",
    "class_tv",
    "sharpness",
]


def run_train(tmp_path: Path, data_root: Path, hardware: str, cache: Path) -> tuple[dict, str]:
    log_dir = tmp_path / hardware
    code, out, err = run_cli(
        "src.train",
        f"hardware={hardware}",
        "data.source=files",
        f"paths.data_dir={data_root}",
        f"paths.log_dir={log_dir}",
        f"paths.cache_dir={cache}",
        # The weights stay at their (seeded) initialisation: both runs score the same model, whatever
        # data each process trained on. No batch norm, whose running statistics would move anyway.
        "model.optimizer.lr=0",
        "model.norm=none",
        "model.width=8",
        "model.latent_dim=4",
        "model.iwae_samples=3",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "data.batch_size=16",
        "data.eval_batch_size=32",
        "callbacks.samples.n=4",
        # Uneven shares: 3 chunks over 2 ranks at validation, 5 (the last one partial) at test.
        "metrics.n_fake_val=96",
        "metrics.n_fake_test=150",
        "metrics.chunk_size=32",
        "metrics.kid_subsets=10",
        "metrics.extractor_epochs=2",
    )
    assert code == 0, err[-3000:]
    (run,) = list((log_dir / "train" / "runs").iterdir())
    return json.loads((run / "metrics.json").read_text()), out + err


def test_one_and_two_processes_give_identical_scores(tmp_path: Path, data_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cache = tmp_path / "cache"
    # Two processes first, on an empty cache: the main process trains the extractor before the
    # worker starts; the worker loads it. The single-process run then loads it too.
    ddp, ddp_log = run_train(tmp_path, data_root, "ddp_cpu", cache)
    assert ddp_log.count("training the domain feature extractor") == 1
    single, _ = run_train(tmp_path, data_root, "cpu", cache)
    for stage in ("val", "test"):
        for name in SCORES:
            assert ddp[f"{stage}/{name}"] == single[f"{stage}/{name}"], f"{stage}/{name}"
        assert ddp["protocol"][stage] == single["protocol"][stage]
    assert ddp["protocol"]["test"]["n_fake"] == 150
