"""Multiruns through the real command line: basic sweeps, Optuna, DDP inside a sweep, W&B per job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from tests.wandb_records import history_keys, read_records, run_record

pytestmark = pytest.mark.slow
TEST_CONF = Path(__file__).parent / "conf"

TINY_VAE = [
    "model.width=8",
    "model.latent_dim=4",
    "model.iwae_samples=2",
    "data.source=files",
    "data.batch_size=16",
    "data.eval_batch_size=32",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "metrics=none",
]


def sweep(tmp_path: Path, data_root: Path, *args: str) -> Path:
    hardware = [] if any(a.startswith("hardware=") for a in args) else ["hardware=cpu"]
    # Flags first (argparse), the test's own overrides last (they win over the tiny defaults).
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith("-")]
    code, _, err = run_cli(
        "src.train",
        *flags,
        *TINY_VAE,
        *hardware,
        f"paths.data_dir={data_root}",
        f"paths.log_dir={tmp_path}",
        *overrides,
    )
    assert code == 0, err[-4000:]
    sweeps = list((tmp_path / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1
    return sweeps[0]


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(
        (p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )


def metrics(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


def test_basic_multirun_gives_one_dir_and_metrics_per_job(tmp_path: Path, data_root: Path) -> None:
    sweep_dir = sweep(tmp_path, data_root, "-m", "model.beta=0.5,2.0")
    jobs = job_dirs(sweep_dir)
    assert len(jobs) == 2
    betas = [yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["model"]["beta"] for job in jobs]
    assert betas == [0.5, 2.0]
    assert all(metrics(job)["status"] == "ok" for job in jobs)


def test_optuna_sweep_runs_its_trials_and_reports_the_best(tmp_path: Path, data_root: Path) -> None:
    sweep_dir = sweep(
        tmp_path,
        data_root,
        "hparams_search=vae_optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
    )
    jobs = job_dirs(sweep_dir)
    assert len(jobs) == 3
    elbos = [metrics(job)["val/elbo"] for job in jobs]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(elbos))


def test_failed_trial_returns_the_penalty_and_the_sweep_goes_on(tmp_path: Path, data_root: Path) -> None:
    # tests/conf/hparams_search/lr_grid.yaml: an Optuna grid over lr in {1e30, 1e-3}; 1e30 diverges.
    sweep_dir = sweep(tmp_path, data_root, f"hydra.searchpath=[file://{TEST_CONF}]", "hparams_search=lr_grid")
    jobs = job_dirs(sweep_dir)
    assert len(jobs) == 2
    results = {metrics(job)["status"]: metrics(job) for job in jobs}
    assert set(results) == {"ok", "failed"}
    assert "NaN or infinite" in results["failed"]["reason"]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(results["ok"]["val/elbo"])


def test_ddp_inside_a_multirun_runs_each_job_once_with_its_own_config(
    tmp_path: Path, data_root: Path
) -> None:
    # Different latent sizes per job: a worker running another job's config could not even sync.
    sweep_dir = sweep(tmp_path, data_root, "-m", "hardware=ddp_cpu", "model.latent_dim=3,5")
    jobs = job_dirs(sweep_dir)
    assert [job.name for job in jobs] == ["0", "1"]
    assert not list((tmp_path / "train").glob("runs/*")), "a worker created a run directory of its own"
    for job, latent in zip(jobs, (3, 5)):
        result = metrics(job)
        assert result["status"] == "ok"
        assert result["global_step"] == 3
        hparams = yaml.safe_load((job / "csv" / "hparams.yaml").read_text())
        assert hparams["model"]["latent_dim"] == latent


def test_each_job_is_its_own_offline_wandb_run_grouped_by_sweep(tmp_path: Path, data_root: Path) -> None:
    sweep_dir = sweep(tmp_path, data_root, "-m", "logger=wandb", "model.beta=0.5,2.0")
    groups, names = set(), []
    for job in job_dirs(sweep_dir):
        runs = list((job / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(runs) == 1
        records = read_records(runs[0])
        assert {"train/loss", "val/elbo", "test/elbo"} <= history_keys(records)
        run = run_record(records)
        groups.add(run.run_group)
        names.append(run.display_name)
    assert len(groups) == 1 and sweep_dir.name in groups.pop()
    # Named after the job's overrides: the swept value distinguishes the two runs.
    assert [name.rsplit(",", 1)[-1] for name in names] == ["model.beta=0.5", "model.beta=2.0"]


def test_submitit_launcher_runs_each_job_in_its_own_process(tmp_path: Path, data_root: Path) -> None:
    # submitit's local executor stands in for SLURM (hydra/launcher=slurm uses the same plugin).
    sweep_dir = sweep(tmp_path, data_root, "-m", "hydra/launcher=local", "model.beta=0.5,2.0")
    jobs = job_dirs(sweep_dir)
    assert len(jobs) == 2 and all(metrics(job)["status"] == "ok" for job in jobs)
    assert (sweep_dir / ".submitit").is_dir()
