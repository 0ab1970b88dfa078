"""Training, evaluation and resuming, in-process (the same task functions the CLI runs)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import ClassVar

import lightning.pytorch as pl
import pytest
import torch

from src.eval import evaluate
from src.runtime.run import read_metrics_json, run_task
from src.train import train
from tests.conftest import FAST_VAE

DATASETS = {
    "mnist": ["data=mnist", "data.source=files"],
    "fashion_mnist": ["data=fashion_mnist", "data.source=files"],
    "cifar10": ["data=cifar10", "data.source=files"],
    "image_folder": ["data=image_folder", "data.image_size=32"],
}


def _data(name: str, image_root: Path) -> list[str]:
    extra = [f"data.root={image_root}"] if name == "image_folder" else []
    return DATASETS[name] + extra


# `make test-fast` runs each model on two of the datasets, every dataset once; `make test` all pairs.
FAST_PAIRS = {("vae", "mnist"), ("cvae", "fashion_mnist"), ("vae", "cifar10"), ("cvae", "image_folder")}
PAIRS = [(m, d) for d in DATASETS for m in ("vae", "cvae")]


@pytest.mark.parametrize(
    ("model", "data"),
    [pytest.param(m, d, marks=() if (m, d) in FAST_PAIRS else pytest.mark.slow) for m, d in PAIRS],
    ids=[f"{d}-{m}" for m, d in PAIRS],
)
def test_fast_dev_run_on_every_dataset(make_cfg, image_root: Path, model: str, data: str) -> None:
    cfg = make_cfg("train", [f"model={model}", *FAST_VAE, *_data(data, image_root), "debug=fdr"])
    result = train(cfg)
    assert math.isfinite(result.metrics["test/elbo"])
    assert result.metrics["test/nll_iwae"] > 0


def test_a_fast_dev_run_takes_few_iwae_samples_and_a_real_run_its_configured_number(
    make_cfg, monkeypatch
) -> None:
    from src.models.vae import FAST_DEV_RUN_IWAE_SAMPLES, VaeModule

    used: list[int] = []
    original = VaeModule.iwae_nll

    def recording(self, x, y, samples, generator=None, chunk=10):
        used.append(samples)
        return original(self, x, y, samples, generator, chunk)

    monkeypatch.setattr(VaeModule, "iwae_nll", recording)
    budget = ["model.width=8", "model.latent_dim=4", "model.iwae_samples=7", "data.source=files"]
    train(make_cfg("train", [*budget, "debug=fdr"]))
    assert used and set(used) == {FAST_DEV_RUN_IWAE_SAMPLES}
    used.clear()
    train(make_cfg("train", [*budget, "trainer.max_epochs=1", "metrics=none"]))
    assert used and set(used) == {7}


def test_run_leaves_checkpoints_samples_and_metrics_json(make_cfg) -> None:
    cfg = make_cfg("train", [*FAST_VAE, "data.source=files", "trainer.max_epochs=2"])
    assert run_task(train, cfg) is None
    out = Path(cfg.paths.output_dir)
    assert (out / "checkpoints" / "best.ckpt").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        f"{kind}step_{step:07d}.png" for kind in ("interp_", "recon_", "") for step in (3, 6)
    ]
    metrics = read_metrics_json(out)
    assert metrics["status"] == "ok" and metrics["data_source"] == "files"
    for name in ("val/elbo", "val/recon", "val/kl", "val/loss", "test/elbo", "test/nll_iwae", "train/loss"):
        assert math.isfinite(metrics[name]), name
    # The ELBO is a lower bound on log p(x); the IWAE bound is tighter.
    assert metrics["test/elbo"] <= -metrics["test/nll_iwae"] + 1e-3
    assert abs(metrics["val/elbo"] + metrics["val/recon"] + metrics["val/kl"]) < 1e-2
    assert (out / "csv" / "metrics.csv").is_file()


def test_eval_reproduces_the_test_metrics(make_cfg) -> None:
    cfg = make_cfg("train", [*FAST_VAE, "data.source=files"])
    trained = train(cfg)
    best = trained.protocol["tested_checkpoint"]
    eval_cfg = make_cfg("eval", [f"ckpt_path={best}", "hardware=cpu"])
    rescored = evaluate(eval_cfg)
    for name in ("test/elbo", "test/recon", "test/kl", "test/nll_iwae"):
        assert rescored.metrics[name] == pytest.approx(trained.metrics[name], rel=1e-5), name


def test_resume_from_last_checkpoint_continues_the_step_count(make_cfg) -> None:
    first = make_cfg("train", [*FAST_VAE, "data.source=files", "trainer.max_epochs=1", "test=false"])
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 3
    resumed = make_cfg(
        "train", [*FAST_VAE, "data.source=files", "trainer.max_epochs=2", "test=false", f"ckpt_path={last}"]
    )
    result = train(resumed)
    assert result.metrics["global_step"] == 6
    assert result.metrics["epoch"] == 2


def test_ckpt_path_auto_resumes_a_requeued_job_from_its_own_last_checkpoint(make_cfg, tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    common = [*FAST_VAE, "data.source=files", "test=false", "ckpt_path=auto", f"paths.output_dir={job_dir}"]
    first = train(make_cfg("train", [*common, "trainer.max_epochs=1"]))
    assert first.metrics["global_step"] == 3  # nothing to resume from: a fresh start
    requeued = train(make_cfg("train", [*common, "trainer.max_epochs=2"]))
    assert requeued.metrics["global_step"] == 6
    # The CSV history of the first segment survives the requeue.
    with open(job_dir / "csv" / "metrics.csv", newline="") as handle:
        epochs = {row["epoch"] for row in csv.DictReader(handle) if row.get("val/loss")}
    assert epochs == {"0", "1"}


def test_last_checkpoint_is_the_newest_even_when_the_monitor_does_not_improve(make_cfg) -> None:
    # No learning (lr 0, no batch norm statistics): val/elbo never improves, so best.ckpt stays at
    # epoch 0 while last.ckpt must still move on.
    cfg = make_cfg(
        "train",
        [
            *FAST_VAE,
            "data.source=files",
            "test=false",
            "trainer.max_epochs=3",
            "model.norm=none",
            "model.optimizer.lr=0",
        ],
    )
    train(cfg)
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", weights_only=False)
    best = torch.load(checkpoints / "best.ckpt", weights_only=False)
    assert (last["global_step"], best["global_step"]) == (9, 3)


def test_last_checkpoint_holds_the_final_step_of_a_max_steps_run(make_cfg) -> None:
    cfg = make_cfg(
        "train", [*FAST_VAE, "data.source=files", "test=false", "trainer.max_epochs=3", "trainer.max_steps=4"]
    )
    train(cfg)
    last = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 4  # mid-epoch: 3 steps per epoch


def test_requeued_job_continues_its_wandb_run(make_cfg, tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    common = [
        *FAST_VAE,
        "data.source=files",
        "test=false",
        "ckpt_path=auto",
        f"paths.output_dir={job_dir}",
        "logger=wandb",
        "logger.wandb.mode=offline",
    ]
    train(make_cfg("train", [*common, "trainer.max_epochs=1"]))
    train(make_cfg("train", [*common, "trainer.max_epochs=2"]))
    segments = sorted((job_dir / "wandb").glob("offline-run-*"))
    assert len(segments) == 2
    # offline-run-<time>-<run id>[-<n> when two segments start in the same second]
    assert len({segment.name.split("-")[3] for segment in segments}) == 1  # one run id


def test_nan_loss_stops_the_run_keeps_last_good_checkpoint_and_records_failure(make_cfg, monkeypatch) -> None:
    from src.models.vae import VaeModule

    original = VaeModule.training_step

    def poisoned(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        return loss * float("nan") if self.current_epoch == 1 else loss

    monkeypatch.setattr(VaeModule, "training_step", poisoned)
    cfg = make_cfg("train", [*FAST_VAE, "data.source=files", "trainer.max_epochs=3"])
    with pytest.raises(SystemExit) as exit_info:
        run_task(train, cfg)
    assert exit_info.value.code == 1
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "NaN" in metrics["reason"]
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 3  # written after the first (good) epoch only
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_user_error_inside_a_run_records_a_failed_metrics_json(make_cfg, capsys) -> None:
    cfg = make_cfg("train", [*FAST_VAE, "data.source=files", "data.image_size=30"])
    with pytest.raises(SystemExit) as exit_info:
        run_task(train, cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("Error: model=vae cannot produce 30x30 images")
    metrics = read_metrics_json(cfg.paths.output_dir)
    assert metrics["status"] == "failed" and "30x30" in metrics["reason"]


class StepLossRecorder(pl.Callback):
    """Each training batch's returned loss, and what ``callback_metrics`` hold at each epoch end."""

    batches: ClassVar[list[float]] = []
    epoch_ends: ClassVar[list[float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        StepLossRecorder.batches.append(float(outputs["loss"]))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        StepLossRecorder.epoch_ends.append(float(trainer.callback_metrics["train/loss"]))


def test_step_scalars_reach_every_logging_step_and_the_epoch_end(make_cfg) -> None:
    """Training scalars are logged only on the steps Lightning writes (log_step_scalars): the CSV
    still holds a row every ``log_every_n_steps``, and epoch-end readers see the last batch's value."""
    StepLossRecorder.batches, StepLossRecorder.epoch_ends = [], []
    overrides = [
        *FAST_VAE,
        "data.source=files",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=7",
        "trainer.log_every_n_steps=3",
        "test=false",
        f"+callbacks.step_loss._target_={__name__}.StepLossRecorder",
    ]
    cfg = make_cfg("train", overrides)
    result = train(cfg)
    with (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").open() as f:
        rows = [row for row in csv.DictReader(f) if row.get("train/loss")]
    # Lightning writes after batches 3, 6, 9, 12 of the 14 (its step column counts from 0).
    assert [int(row["step"]) for row in rows] == [2, 5, 8, 11]
    for row in rows:
        assert float(row["train/loss"]) == pytest.approx(StepLossRecorder.batches[int(row["step"])], rel=1e-5)
    last_of_epoch = [StepLossRecorder.batches[6], StepLossRecorder.batches[13]]
    assert StepLossRecorder.epoch_ends == pytest.approx(last_of_epoch, rel=1e-5)
    assert result.metrics["train/loss"] == pytest.approx(StepLossRecorder.batches[-1], rel=1e-5)
