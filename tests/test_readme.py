"""The README is a test: every command it prints runs here, as printed, in a fresh copy of the checkout.

Only budget overrides are appended (epochs, batches, steps, sample counts, trials, jobs of a
preset sweep); placeholders the README shows (``<run>``, ``.../best.ckpt``, ``/path/to/images``)
are filled with the runs and files made here. No path override the README does not show is added:
data, logs and caches land where a new user's would, under the copy. MNIST is the bundled subset
(no network), CIFAR-10 and Fashion-MNIST are tiny files in their published formats under
``data/`` of the copy, as the README's "Data" table says. Commands that need what this machine
lacks (GPUs, SLURM, several nodes) must give the ``Error:`` line the README promises, or, where
nothing can run (torchrun across nodes), compose.

``test_every_readme_command_is_covered`` fails when the README prints a command this file does not
know: a new command needs its entry in ``CASES``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, make_cifar10, make_idx_dataset, make_image_folder, make_table_csv

README = ROOT / "README.md"
TIMEOUT = 900


# ---------------------------------------------------------------------------- reading the README
def _join_continuations(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if out and out[-1].endswith("\\"):
            out[-1] = out[-1][:-1].rstrip() + " " + line.strip()
        else:
            out.append(line.strip())
    return out


def readme_commands(text: str) -> list[str]:
    """Shell commands of the README (code blocks and inline code), whitespace-normalised, in order."""
    found: list[str] = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if lang == "python":
            continue
        for line in _join_continuations(body.splitlines()):
            line = re.sub(r"\s+#.*$", "", line)
            line = line[2:] if line.startswith("$ ") else line
            if re.match(r"(python -m |make |torchrun )", line):
                found.append(" ".join(line.split()))
    for inline in re.findall(r"`((?:python -m|make|torchrun) [^`]+)`", text):
        found.append(" ".join(inline.split()))
    return list(dict.fromkeys(found))


def readme_python(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def readme_errors(text: str) -> dict[str, str]:
    """``$ command`` -> the ``Error:`` line printed under it in the README."""
    return dict(re.findall(r"^\$ (python -m [^\n]+)\n(Error: [^\n]+)$", text, re.M))


# ---------------------------------------------------------------------------- budgets
TRAIN_BUDGET = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "metrics.n_fake_val=32",
    "metrics.n_fake_test=32",
    "metrics.n_train_reference=256",
    "metrics.kid_subsets=5",
    "metrics.extractor_epochs=1",
    "callbacks.samples.n=16",
]
VAE_BUDGET = ["model.iwae_samples=2"]
# Tables (metrics=table): two epochs of every batch (CTGAN then draws each class of a fill), the
# scores on 100 rows.
TABLE_BUDGET = [
    "trainer.max_epochs=2",
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "metrics.n_fake_val=100",
    "metrics.n_fake_test=100",
]


def train_budget(command: str) -> list[str]:
    model = re.search(r"\bmodel=(\w+)", command)
    vae = model is None or model.group(1) in ("vae", "cvae")
    return TRAIN_BUDGET + (VAE_BUDGET if vae else [])


@dataclass
class Case:
    """How a README command runs here.

    kind: ``run`` (exit 0), ``error`` (exit != 0 and one ``Error:`` line containing ``fragment``),
    ``compose`` (only ``--cfg job``: nothing can run on one machine), ``skip`` (``reason`` says why).
    """

    kind: str = "run"
    budget: Callable[[str], list[str]] | list[str] = field(default_factory=list)
    fragment: str = ""
    reason: str = ""
    gpu: bool = False  # runs for real when a GPU is present, else must give the GPU error
    check: Callable[[Path, str], None] | None = None
    before: Callable[[Path], None] | None = None
    cwd_elsewhere: bool = False
    timeout: int = TIMEOUT  # seconds; a hang, not a speed limit


def _status_ok(checkout: Path, output: str) -> None:
    run_dirs = re.findall(r"^run directory: (.+)$", output, re.M)
    assert run_dirs, output[-2000:]
    for run_dir in run_dirs:
        path = Path(run_dir)
        assert path.is_relative_to(checkout / "logs"), run_dir
        assert json.loads((path / "metrics.json").read_text())["status"] == "ok", run_dir


def _sweep_jobs(expected: int, task: str = "train") -> Callable[[Path, str], None]:
    def check(checkout: Path, output: str) -> None:
        sweeps = sorted((checkout / "logs" / task / "multiruns").iterdir())
        jobs = [p for p in sweeps[-1].iterdir() if p.is_dir() and p.name.isdigit()]
        assert len(jobs) == expected, jobs
        for job in jobs:
            assert json.loads((job / "metrics.json").read_text())["status"] == "ok", job

    return check


def _gpu_jobs_fail(checkout: Path, output: str) -> None:
    sweeps = sorted((checkout / "logs" / "train" / "multiruns").iterdir())
    for job in (p for p in sweeps[-1].iterdir() if p.name.isdigit()):
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["status"] == "failed" and "GPU" in metrics["reason"], metrics


def _comparison_written(checkout: Path, output: str) -> None:
    table = (_seed_sweep(checkout) / "compare.md").read_text()
    assert "dcgan" in table and "wgan_gp" in table and "±" in table, table


def _seed_sweep(checkout: Path) -> Path:
    """The README's seeded sweep (``model=dcgan,wgan_gp seed=1,2,3``): what ``<timestamp>`` stands for."""
    for sweep in sorted((checkout / "logs" / "train" / "multiruns").iterdir(), reverse=True):
        overrides = sweep / "0" / ".hydra" / "overrides.yaml"
        if overrides.is_file() and "seed=1" in overrides.read_text():
            return sweep
    raise AssertionError("the seeded sweep of the README has not run")


def _latest_run_with(checkout: Path, override: str) -> Path:
    for run in sorted((checkout / "logs" / "train" / "runs").iterdir(), reverse=True):
        overrides = run / ".hydra" / "overrides.yaml"
        if overrides.is_file() and override in overrides.read_text():
            return run
    raise AssertionError(f"no README run with {override} has run yet")


def _filled(checkout: Path, output: str) -> None:
    manifest = json.loads((checkout / "filled" / "mnist_rare" / "manifest.json").read_text())
    # Balanced: every class as large as the largest; the three rare classes mostly synthetic.
    counts = [entry["count"] for entry in manifest["classes"]]
    assert len(set(counts)) == 1, counts
    assert all(manifest["classes"][c]["real"] == 20 for c in (3, 5, 8)), manifest["classes"]


def _remove(relative: str) -> Callable[[Path], None]:
    return lambda checkout: shutil.rmtree(checkout / relative, ignore_errors=True)


def _export_verified(checkout: Path, output: str) -> None:
    manifest = json.loads((checkout / "synthetic" / "mnist_cvae" / "manifest.json").read_text())
    assert manifest["n"] == 64 and manifest["label_source"] == "conditional"


def _report_written(checkout: Path, output: str) -> None:
    report = json.loads((checkout / "synthetic" / "mnist_cvae.report.json").read_text())
    assert set(report["utility"]["accuracy"]) == {"synthetic", "real", "real+synthetic"}
    assert "CAS 3/3" in output


def _table_exported(checkout: Path, output: str) -> None:
    import pandas as pd

    root = checkout / "synthetic" / "doctor_aus"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["kind"] == "table" and manifest["n"] == 200 and manifest["label_source"] == "model"
    csv, parquet = pd.read_csv(root / "data.csv"), pd.read_parquet(root / "data.parquet")
    assert list(csv.columns) == list(parquet.columns) == [c["name"] for c in manifest["columns"]]
    assert len(csv) == len(parquet) == 200 and set(parquet["insurance"]) <= {
        "freepor",
        "freerepa",
        "levyplus",
        "medlevy",
    }


def _table_filled(checkout: Path, output: str) -> None:
    manifest = json.loads((checkout / "filled" / "doctor_aus" / "manifest.json").read_text())
    counts = [entry["count"] for entry in manifest["classes"]]
    assert len(set(counts)) == 1 and manifest["fill"]["target"] == "balance", manifest["classes"]
    assert manifest["sources"]["real"]["n"] > 0 and "gate" in manifest


def _table_report_written(name: str, augmentation: bool = False) -> Callable[[Path, str], None]:
    def check(checkout: Path, output: str) -> None:
        root = checkout / ("filled" if name.startswith("filled") else "synthetic")
        report = json.loads((root / f"{name.split('/')[-1]}.report.json").read_text())
        assert {"quality", "detection_auc", "tstr_accuracy"} <= set(report["scores"])
        if augmentation:
            arms = json.loads((root / f"{name.split('/')[-1]}.augmentation.json").read_text())["arms"]
            assert set(arms) == {
                "real",
                "real+synthetic",
                "real+oversample",
                "real+class_weights",
                "real+smote",
            }

    return check


def _benchmark_written(checkout: Path, output: str) -> None:
    results = json.loads((checkout / "experiments" / "benchmarks" / "results.json").read_text())
    assert [row["model"] for row in results["training"]] == ["vae", "dcgan"]
    for row in results["training"]:
        assert row["framework_images_per_s"] > 0 and row["raw_images_per_s"] > 0
        assert row["ratio"] == pytest.approx(row["framework_images_per_s"] / row["raw_images_per_s"])
        assert row["startup_s"] > 0 and row["framework_peak_rss_mb"] > 0
    # --quick runs each code path once: the VAE and the n_critic=5 GAN per step, the VAE's options.
    assert [row["model"] for row in results["overhead"]] == ["vae", "wgan_gp"]
    for row in results["overhead"]:
        assert row["raw_step_ms"] > 0 and row["lightning_step_ms"] > 0 and row["framework_step_ms"] > 0
        # One round: the total is the sum of Lightning's share and this framework's own.
        assert row["extra_ms_per_step"] == pytest.approx(row["framework_step_ms"] - row["raw_step_ms"])
        assert row["extra_ms_per_step"] == pytest.approx(
            row["lightning_extra_ms_per_step"] + row["framework_own_extra_ms_per_step"]
        )
        # Lightning's profiler on the same run: per-step loop work outside the model, callbacks named.
        profile = row["profile"]
        assert profile["batches"] > 0 and profile["hooks_ms_per_step"] > 0
        assert any(action.startswith("[Callback]DivergenceGuard") for action in profile["ms_per_step"])
    startup = results["startup"]
    assert startup["model"] == "vae" and list(startup["fast_dev_run_s"]) == ["vae"]
    for key in ("baseline_s", "imports_s", "compose_s", "data_load_s", "first_step_s"):
        assert startup[key] > 0, key
    assert startup["target_s"] == pytest.approx(1.5 * (startup["baseline_s"] + startup["data_load_s"]))
    options = {(row["model"], row["option"]) for row in results["options"]}
    assert options == {("vae", o) for o in ("channels_last", "bf16-mixed", "compile")}
    export = results["export"]
    assert export["png_images_per_s"] > 0 and export["disk_png_images_per_s"] > 0
    assert export["disk_bare_file_writes_per_s"] > 0
    assert all(
        results["evaluation"][f"{score}_s"] > 0 for score in ("p_precision_recall", "swd", "detection")
    )
    assert "| vae |" in (checkout / "experiments" / "benchmarks" / "results.md").read_text()


NO_GPU = "this machine has no CUDA GPU"
CASES: dict[str, Case] = {
    # Set up
    "make train": Case(budget=TRAIN_BUDGET + VAE_BUDGET),
    "make test": Case("skip", reason="the test suite itself (CI runs it)"),
    "make test-fast": Case("skip", reason="the test suite itself, minus the slow tests"),
    "make install": Case(),
    "make lint": Case(),
    "make format": Case(),
    # ~25 fresh processes (every row's both sides): ~15 minutes on the 2-core VM on a slow day.
    "make bench": Case(budget=["--quick"], check=_benchmark_written, timeout=2400),
    "make clean": Case("skip", reason="run last, by test_make_clean_removes_the_outputs"),
    'make train ARGS="model=cvae trainer.max_epochs=3"': Case(budget=train_budget),
    # Commands and examples
    "python -m src.train model=vae data=mnist": Case(budget=train_budget, check=_status_ok),
    "python -m src.train model=vae data=image_folder data.root=/path/to/images data.image_size=64": Case(
        budget=train_budget, check=_status_ok
    ),
    "python -m src.train ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt": Case(
        budget=[*train_budget("model=vae"), "trainer.max_epochs=2"], check=_status_ok
    ),
    "python -m src.eval ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt": Case(check=_status_ok),
    "python -m src.generate ckpt_path=.../best.ckpt n=50000 out_dir=synthetic/mnist_cvae": Case(
        budget=["n=64"], before=_remove("synthetic/mnist_cvae"), check=_export_verified
    ),
    "python -m src.generate ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt n=50000 out_dir=synthetic/mnist_cvae": Case(
        budget=["n=64"], before=_remove("synthetic/mnist_cvae"), check=_export_verified
    ),
    "python -m src.verify_dataset synthetic/mnist_cvae": Case(),
    "python -m src.verify_dataset <dir>": Case(),
    "python -m src.evaluate_dataset synthetic=synthetic/mnist_cvae data=mnist": Case(
        budget=["classifier.epochs=1"], check=_report_written
    ),
    "python -m src.evaluate_dataset synthetic=<dir> data=mnist": Case(
        budget=["classifier.epochs=1"], check=_report_written
    ),
    "python -m src.train_evaluator data=mnist": Case(budget=["metrics.extractor_epochs=1"], check=_status_ok),
    "python -m src.train debug=fdr": Case(budget=["metrics.n_fake_val=32", "metrics.n_fake_test=32"]),
    "python -m src.train model=vae model.latent_dim=32 model.beta=4 model.kl_warmup_steps=2000": Case(
        budget=train_budget, check=_status_ok
    ),
    "python -m src.train model=vae model.likelihood=gaussian model.binarize=false data=cifar10": Case(
        budget=train_budget, check=_status_ok
    ),
    "python -m src.train model=cvae data=fashion_mnist data.batch_size=256": Case(
        budget=train_budget, check=_status_ok
    ),
    "python -m src.train data=mnist data.image_size=32 data.channels=3": Case(
        budget=train_budget, check=_status_ok
    ),
    "python -m src.train trainer.max_epochs=50 trainer.gradient_clip_val=1.0": Case(
        budget=train_budget, check=_status_ok
    ),
    "python -m src.train model=cvae export.enabled=true export.n=10000": Case(
        budget=[*train_budget("model=cvae"), "export.n=64"], check=_status_ok
    ),
    # Privacy and audits
    "python -m src.train model=cvae privacy=dp privacy.target_epsilon=10": Case(
        budget=train_budget, check=_status_ok
    ),
    "python -m src.audit ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt": Case(
        budget=["n=64", "n_synthetic=64"], check=_status_ok
    ),
    "python -m src.audit export_dir=synthetic/mnist_cvae": Case(budget=["n=64"], check=_status_ok),
    "python -m src.train experiment=gan_losses_mnist model=dcgan": Case(
        budget=[*train_budget("model=dcgan"), "trainer.check_val_every_n_epoch=1"], check=_status_ok
    ),
    # Gap filling and inpainting
    "python -m src.train experiment=fill_rare 'data.subset.per_class={3:20,5:20,8:20}'": Case(
        # The preset scores and checkpoints every 5 epochs; the one-epoch budget does so at its epoch.
        budget=[
            *TRAIN_BUDGET,
            "metrics.every_n_epochs=1",
            "callbacks.model_checkpoint.every_n_epochs=1",
            "callbacks.samples.every_n_epochs=1",
        ],
        check=_status_ok,
    ),
    "python -m src.generate ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt fill=balance out_dir=filled/mnist_rare": Case(
        before=_remove("filled/mnist_rare"), check=_filled
    ),
    "python -m src.generate ckpt_path=.../best.ckpt fill=balance out_dir=filled/mnist_rare": Case(
        before=_remove("filled/mnist_rare"), check=_filled
    ),
    "python -m src.verify_dataset filled/mnist_rare": Case(),
    "python -m src.generate ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt n=12000 out_dir=synthetic/mnist_rare_pool": Case(
        budget=["n=64"], before=_remove("synthetic/mnist_rare_pool"), check=_status_ok
    ),
    "python -m src.evaluate_dataset synthetic=synthetic/mnist_rare_pool augmentation.enabled=true": Case(
        budget=["classifier.epochs=1", "augmentation.seeds=[0]", "augmentation.min_steps=2"], check=_status_ok
    ),
    "python -m src.inpaint ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt mask=center split=test out_dir=inpainted/mnist_center": Case(
        budget=["n=16", "steps=2"], before=_remove("inpainted/mnist_center"), check=_status_ok
    ),
    "python -m src.inpaint ckpt_path=.../best.ckpt mask=center split=test out_dir=inpainted/mnist_center": Case(
        budget=["n=16", "steps=2"], before=_remove("inpainted/mnist_center"), check=_status_ok
    ),
    "python -m src.inpaint ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt mask=pixels mask_fraction=0.5 split=test out_dir=inpainted/mnist_pixels": Case(
        budget=["n=16", "steps=2"], before=_remove("inpainted/mnist_pixels"), check=_status_ok
    ),
    # Tables
    "python -m src.train model=tvae data=breast_cancer": Case(budget=TABLE_BUDGET, check=_status_ok),
    "python -m src.train model=ctgan data=doctor_aus": Case(budget=TABLE_BUDGET, check=_status_ok),
    "python -m src.train model=gaussian_copula data=doctor_aus": Case(budget=TABLE_BUDGET, check=_status_ok),
    "python -m src.train model=ctgan data=table data.path=/path/to/table.csv data.target=label": Case(
        budget=TABLE_BUDGET, check=_status_ok
    ),
    "python -m src.generate ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt n=5000 out_dir=synthetic/doctor_aus": Case(
        budget=["n=200"], before=_remove("synthetic/doctor_aus"), check=_table_exported
    ),
    "python -m src.verify_dataset synthetic/doctor_aus": Case(),
    "python -m src.evaluate_dataset synthetic=synthetic/doctor_aus data=doctor_aus": Case(
        check=_table_report_written("synthetic/doctor_aus")
    ),
    "python -m src.audit export_dir=synthetic/doctor_aus": Case(budget=["n=64"], check=_status_ok),
    "python -m src.generate ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt fill=balance out_dir=filled/doctor_aus": Case(
        before=_remove("filled/doctor_aus"), check=_table_filled
    ),
    "python -m src.evaluate_dataset synthetic=filled/doctor_aus data=doctor_aus augmentation.enabled=true": Case(
        budget=["augmentation.seeds=[0]"], check=_table_report_written("filled/doctor_aus", augmentation=True)
    ),
    "python -m src.train model=tvae data=breast_cancer privacy=dp privacy.target_epsilon=10": Case(
        budget=TABLE_BUDGET, check=_status_ok
    ),
    "python -m src.train model=ctgan data=adult": Case("error"),
    # Sweeps
    "python -m src.train -m model.beta=0.5,1,2 model.latent_dim=8,16": Case(
        budget=train_budget, check=_sweep_jobs(6), cwd_elsewhere=True
    ),
    "python -m src.train hparams_search=vae_optuna": Case(
        budget=[*train_budget("model=vae"), "hydra.sweeper.n_trials=2"], check=_sweep_jobs(2)
    ),
    "python -m src.train hparams_search=vae_optuna hydra.sweeper.storage=sqlite:///logs/vae.db": Case(
        budget=[*train_budget("model=vae"), "hydra.sweeper.n_trials=2"], check=_sweep_jobs(2)
    ),
    "python -m src.train -m hydra/launcher=local model.beta=0.5,1": Case(
        budget=train_budget, check=_sweep_jobs(2)
    ),
    "python -m src.train -m experiment=vae_beta_sweep": Case(
        budget=[
            *train_budget("model=vae"),
            # Command-line values replace the preset's grid: 2 of its 12 jobs.
            "model.beta=1",
            "model.latent_dim=4,16",
        ],
        check=_sweep_jobs(2, task="vae_beta_sweep"),  # the preset names its own task
    ),
    "python -m src.train model=dcgan hparams_search=gan_optuna optimized_metric=val/precision": Case(
        budget=[*train_budget("model=dcgan"), "hydra.sweeper.n_trials=2"], check=_sweep_jobs(2)
    ),
    "python -m src.train -m model=dcgan,wgan_gp seed=1,2,3": Case(budget=train_budget, check=_sweep_jobs(6)),
    "python -m src.compare logs/train/multiruns/<timestamp>": Case(check=_comparison_written),
    "python -m src.train -m hardware=ddp model.latent_dim=16,32": Case(
        budget=train_budget, gpu=True, check=_gpu_jobs_fail
    ),
    "python -m src.train -m hydra/launcher=slurm hardware=ddp hardware.devices=4 hardware.num_nodes=2 "
    "hydra.launcher.partition=gpu hydra.launcher.timeout_min=600 ckpt_path=auto model.beta=1,4": Case(
        "error", fragment="hydra/launcher=slurm needs a SLURM cluster"
    ),
    "torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=$HEAD:29500 -m src.train "
    "hardware=ddp hardware.num_nodes=2 hardware.devices=8 hydra.run.dir=logs/train/runs/my_run": Case(
        "compose", reason="two nodes of 8 GPUs"
    ),
    # Hardware
    "python -m src.train hardware=gpu": Case(budget=train_budget, gpu=True),
    "python -m src.train hardware=ddp": Case(budget=train_budget, gpu=True),
    "python -m src.train hardware=ddp hardware.devices=4": Case(budget=train_budget, gpu=True),
    "python -m src.train hardware=gpu hardware.precision=bf16-mixed hardware.channels_last=true": Case(
        budget=train_budget, gpu=True
    ),
    "python -m src.train hardware=ddp_cpu": Case(budget=train_budget, check=_status_ok),
    # Errors: the Error: line printed in the README, exactly.
    "python -m src.train model.latent_dim=0": Case("error"),
    "python -m src.train data.image_size=30": Case("error"),
}


# ---------------------------------------------------------------------------- the fresh checkout
def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [name for name in out.split("\0") if name and (ROOT / name).is_file()]


# The runs the README's placeholders stand for (``<run>``, ``.../``), made by README commands
# themselves, on first need; their own test cases reuse these runs rather than training twice.
BASE_RUNS = {
    "vae": "python -m src.train model=vae data=mnist",
    "cvae": "python -m src.train model=cvae export.enabled=true export.n=10000",
    "ctgan_doctor_aus": "python -m src.train model=ctgan data=doctor_aus",
}


@dataclass
class Checkout:
    root: Path
    images: Path
    table: Path
    runs: dict[str, Path] = field(default_factory=dict)
    outputs: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)

    def base_run(self, name: str) -> Path:
        """The run directory of ``BASE_RUNS[name]``, running it the first time."""
        if name not in self.runs:
            command = BASE_RUNS[name]
            result = self.run(command, _budget(CASES[command], command))
            assert result.returncode == 0, result.stderr[-3000:]
            self.outputs[command] = result
            self.runs[name] = Path(re.findall(r"^run directory: (.+)$", result.stdout, re.M)[-1])
        return self.runs[name]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PL_", "LOCAL_RANK", "HYDRA_"))}
        # The copy's `src`, also from other working directories (an install of this checkout).
        env.update(PYTHONPATH=str(self.root), PYTHONUNBUFFERED="1", WANDB_MODE="offline", WANDB_SILENT="true")
        return env

    def fill(self, command: str) -> str:
        """The README's placeholders, filled with what exists in this checkout."""
        command = command.replace("/path/to/images", str(self.images)).replace(
            "/path/to/table.csv", str(self.table)
        )
        if "logs/train/multiruns/<timestamp>" in command:
            command = command.replace(
                "logs/train/multiruns/<timestamp>", str(_seed_sweep(self.root).relative_to(self.root))
            )
        if not any(mark in command for mark in ("<run>", ".../", "<dir>", "mnist_cvae")):
            return command
        # Tables start from the README's CTGAN run, gap filling and inpainting from the README's
        # rare-class run, exports from the cVAE.
        if "doctor_aus" in command:
            run = self.base_run("ctgan_doctor_aus").relative_to(self.root)
        elif "src.inpaint" in command or "fill=" in command or "mnist_rare" in command:
            run = _latest_run_with(self.root, "data.subset").relative_to(self.root)
        elif "src.generate" in command or "src.eval " in command or "mnist_cvae" in command:
            run = self.base_run("cvae").relative_to(self.root)
        else:
            run = self.base_run("vae").relative_to(self.root)
        command = command.replace("logs/train/runs/<run>", str(run)).replace(".../", f"{run}/checkpoints/")
        return command.replace("<dir>", "synthetic/mnist_cvae")

    def run(
        self, command: str, extra: list[str], cwd: Path | None = None, timeout: int = TIMEOUT
    ) -> subprocess.CompletedProcess:
        args = _shell_args(command)
        if args[0] == "make":
            args = _make_args(args, extra)
        elif args[0] == "python":
            args = [sys.executable, *args[1:], *extra]
        return subprocess.run(
            args, cwd=cwd or self.root, env=self.env(), capture_output=True, text=True, timeout=timeout
        )


def _shell_args(command: str) -> list[str]:
    import shlex

    return shlex.split(command)


def _make_args(args: list[str], extra: list[str]) -> list[str]:
    """``make <target> [ARGS="..."]`` with the budget inside ARGS; the environment already exists
    (``.venv`` of the copy points at this interpreter's), so make does not rebuild it."""
    target = [a for a in args[1:] if not a.startswith("ARGS=")]
    given = next((a[len("ARGS=") :] for a in args[1:] if a.startswith("ARGS=")), "")
    make_args = ["make", "-o", ".venv/.installed-stamp", *target]
    combined = " ".join([given, *extra]).strip()
    return make_args + ([f"ARGS={combined}"] if combined else [])


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Checkout:
    """A copy of the checkout (tracked and new files, nothing ignored) with the data a user would have."""
    root = tmp_path_factory.mktemp("checkout") / "genlab"
    for name in _tracked_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    (root / ".venv").symlink_to(Path(sys.prefix))
    make_cifar10(root / "data")
    make_idx_dataset(root / "data", "FashionMNIST", n_train=600)
    images = make_image_folder(tmp_path_factory.mktemp("my_images"), per_class=100)
    return Checkout(root, images, make_table_csv(tmp_path_factory.mktemp("my_table") / "table.csv"))


def _budget(case: Case, command: str) -> list[str]:
    return case.budget(command) if callable(case.budget) else list(case.budget)


# ---------------------------------------------------------------------------- tests
def test_every_readme_command_is_covered() -> None:
    commands = readme_commands(README.read_text())
    assert commands, "no commands found in README.md"
    missing = [c for c in commands if c not in CASES]
    assert not missing, f"README commands without a case in tests/test_readme.py: {missing}"
    stale = [c for c in CASES if c not in commands]
    assert not stale, f"cases for commands the README no longer prints: {stale}"
    errors = readme_errors(README.read_text())
    assert {c for c, case in CASES.items() if case.kind == "error" and not case.fragment} <= set(errors)


RUNNABLE = [c for c in readme_commands(README.read_text()) if c in CASES and CASES[c].kind != "skip"]

# Two halves that share nothing, each in its own module with its own copy of the checkout, so that
# `make test`'s two workers (pytest-xdist, --dist loadfile: one module, one worker, in order) run
# them side by side: the commands that need the README's trained runs, exports and fills
# (tests/test_readme_runs.py), and all the others (here). Within a half, README order is kept.
NEEDS_RUNS = ("<run>", ".../", "<dir>", "mnist_cvae", "mnist_rare", "data.subset", "src.inpaint", "src.audit")
# The table commands run in the same half too: they need its CTGAN run, and the half has the room.
TABLE_MARKS = ("data=breast_cancer", "data=doctor_aus", "data=table", "data=adult", "doctor_aus")


def needs_runs(command: str) -> bool:
    return command in BASE_RUNS.values() or any(mark in command for mark in NEEDS_RUNS + TABLE_MARKS)


def run_readme_command(checkout: Checkout, command: str, tmp_path: Path) -> None:
    """Runs one README command as printed (with its budget) and checks what its case promises."""
    case = CASES[command]
    if command in BASE_RUNS.values():
        # Made once, as printed, with its budget: the placeholders' runs are these very runs.
        checkout.base_run(next(name for name, base in BASE_RUNS.items() if base == command))
        result = checkout.outputs[command]
        assert re.search(r"^run directory: ", result.stdout, re.M), result.stdout[-2000:]
        if case.check:
            case.check(checkout.root, result.stdout + result.stderr)
        return
    filled = checkout.fill(command)
    if case.before:
        case.before(checkout.root)
    if case.kind == "compose":
        # Nothing can start here (it needs several machines); its src.train part must compose.
        train_part = filled.split(" -m src.train ", 1)[1]
        result = checkout.run(f"python -m src.train {train_part}", ["--cfg", "job"])
        assert result.returncode == 0, result.stderr[-3000:]
        assert shutil.which("torchrun", path=str(Path(sys.executable).parent)), "torchrun is not installed"
        return
    gpu_here = torch.cuda.is_available()
    expect_gpu_error = case.gpu and not gpu_here
    multirun = " -m " in f" {command.split('src.train', 1)[-1]} "
    cwd = tmp_path if case.cwd_elsewhere else None
    result = checkout.run(filled, _budget(case, command), cwd=cwd, timeout=case.timeout)
    output = result.stdout + result.stderr
    if case.kind == "error" or (expect_gpu_error and not multirun):
        assert result.returncode != 0, output[-3000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        printed = readme_errors(README.read_text()).get(command)
        if expect_gpu_error:
            assert "GPU" in errors[0], errors[0]
        elif printed:
            assert errors[0] == printed
        else:
            assert case.fragment in errors[0], errors[0]
        return
    assert result.returncode == 0, output[-4000:]
    # Every command names its run directory (submitit jobs print theirs into their own logs).
    if (
        not command.startswith(("make", "python -m src.verify", "python -m src.compare"))
        and "hydra/launcher=" not in command
    ):
        assert re.search(r"^run directory: ", result.stdout, re.M), result.stdout[-2000:]
    if case.check:
        case.check(checkout.root, output)


OWN = [c for c in RUNNABLE if not needs_runs(c)]


@pytest.mark.slow
@pytest.mark.parametrize("command", OWN, ids=[c[:80] for c in OWN])
def test_readme_command_runs_as_printed(checkout: Checkout, command: str, tmp_path: Path) -> None:
    run_readme_command(checkout, command, tmp_path)


@pytest.mark.slow
def test_make_clean_removes_the_outputs(checkout: Checkout) -> None:
    assert (checkout.root / "logs").is_dir()
    result = checkout.run("make clean", [])
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (checkout.root / "logs").exists()
    assert (checkout.root / "src" / "train.py").is_file()
