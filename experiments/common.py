"""Shared by the studies: run a sweep through the real command line and gather its results."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
# The conditional GAN the MNIST studies share: DCGAN networks (conditional batch norm in G,
# projection D), one discriminator update per generator update, Adam 8e-4 with betas (0, 0.9) (why:
# the synthetic_mnist study's README and run.py). The betas are the ones these studies ran with,
# stated since model=cgan's default became (0.5, 0.999).
CGAN_RECIPE = [
    "model=cgan",
    "model.arch=dcgan",
    "model.n_critic=1",
    "model.optimizer_g.lr=0.0008",
    "model.optimizer_d.lr=0.0008",
    "model.optimizer_g.betas=[0.0,0.9]",
    "model.optimizer_d.betas=[0.0,0.9]",
]


@dataclass
class Job:
    """One job of a multirun: its overrides (the sweep's choice), config and metrics.json."""

    directory: Path
    overrides: dict[str, str]
    config: dict[str, Any]
    metrics: dict[str, Any]


def run_multirun(args: Sequence[str], log_dir: Path, module: str = "src.train") -> tuple[list[Job], float]:
    """``python -m <module> -m <args> paths.log_dir=<log_dir>``; returns the jobs and the wall time."""
    started = time.perf_counter()
    command = [sys.executable, "-m", module, "-m", *args, f"paths.log_dir={log_dir}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(command, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {proc.returncode}")
    seconds = time.perf_counter() - started
    sweeps = sorted((log_dir).glob("*/multiruns/*"), key=lambda p: p.stat().st_mtime)
    jobs = collect_jobs(sweeps[-1])
    # A sweep carries on past a failed job (it gets a penalty); a study must not tabulate it.
    failed = [
        f"{job.directory}: {job.metrics.get('reason', job.metrics.get('status'))}"
        for job in jobs
        if job.metrics.get("status") != "ok"
    ]
    if failed:
        raise RuntimeError("jobs failed:\n" + "\n".join(failed))
    return jobs, seconds


def collect_jobs(sweep_dir: Path) -> list[Job]:
    jobs = []
    for directory in sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        overrides = yaml.safe_load((directory / ".hydra" / "overrides.yaml").read_text())
        jobs.append(
            Job(
                directory=directory,
                overrides=dict(o.split("=", 1) for o in overrides if "=" in o),
                config=yaml.safe_load((directory / ".hydra" / "config.yaml").read_text()),
                metrics=json.loads((directory / "metrics.json").read_text()),
            )
        )
    return jobs


def cpu_model_and_vector_units() -> tuple[str, list[str]]:
    """The CPU's model name and its vector extensions (Linux): a VM's host CPU can change between runs,
    and AVX-512 / AMX decide the speed of these kernels, bf16 above all."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    name = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    units = sorted({f for f in (flags.group(1).split() if flags else []) if f.startswith(("avx", "amx"))})
    return (name.group(1).strip() if name else platform.machine()), units


def machine_description() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    model, units = cpu_model_and_vector_units()
    widest = (
        "AVX-512"
        if any(u.startswith("avx512") for u in units)
        else ("AVX2" if "avx2" in units else "no AVX2")
    )
    return (
        f"{os.cpu_count()}-core {platform.machine()} CPU ({model}, {widest}), {gpu}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def mean_std(values: Sequence[float]) -> str:
    values = [float(v) for v in values]
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{statistics.mean(values):.3g} ± {statistics.stdev(values):.2g}"


# The share of samples a classifier is sure of (val/confident_frac's default threshold).
CONFIDENT_P = 0.9


def run_train_job(overrides: Sequence[str], log_dir: Path, run_dir: Path) -> tuple[Path, float]:
    """``python -m src.train <overrides>`` on one thread, into ``run_dir``; the run dir and wall time.

    The log goes to ``<run_dir>.log``; a failed run raises with that path.
    """
    command = [
        sys.executable,
        "-m",
        "src.train",
        *overrides,
        f"paths.log_dir={log_dir}",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir.parent / f"{run_dir.name}.log"
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {proc.returncode}); log: {log_path}")
    return run_dir, seconds


def run_config(run_dir: Path) -> dict:
    """The resolved config a run stored in its tested checkpoint."""
    from src.models.checkpoint import CONFIG_KEY, read_checkpoint

    metrics = json.loads((run_dir / "metrics.json").read_text())
    return read_checkpoint(metrics["protocol"]["tested_checkpoint"])[CONFIG_KEY]


def real_confident_share(run_dir: Path) -> dict[str, float]:
    """The domain classifier's share of real test images classified with p >= 0.9 (the reference)."""
    import torch
    from omegaconf import OmegaConf

    from src.metrics import load_extractor
    from src.runtime.build import build_datamodule

    cfg = OmegaConf.create(run_config(run_dir))
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    extractor = load_extractor(datamodule, cfg.paths.cache_dir)
    images, _ = datamodule.split("test")
    with torch.no_grad():
        probabilities = torch.softmax(extractor.classify(images.cpu()).double(), dim=1)
    return {"confident_frac": float((probabilities.amax(1) >= CONFIDENT_P).double().mean()), "n": len(images)}


def sample_figure(runs: dict[str, Path], path: Path) -> None:
    """64 samples of each model's tested checkpoint (first seed; EMA generator where there is one)."""
    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    from src.models.base import GenerativeModule

    fig, axes = plt.subplots(1, len(runs), figsize=(3 * len(runs), 3.3), dpi=110, squeeze=False)
    for ax, (model_name, run_dir) in zip(axes[0], runs.items()):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        checkpoint = metrics["protocol"].get("tested_checkpoint") or run_dir / "checkpoints" / "last.ckpt"
        model = GenerativeModule.from_checkpoint(checkpoint)
        labels = torch.arange(64) % 8 if model.num_classes else None
        images = model.sample(64, labels=labels, generator=torch.Generator().manual_seed(0)).cpu()
        ax.imshow(make_grid(images, nrow=8, padding=1).permute(1, 2, 0).numpy())
        ax.set_title(f"model={model_name}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
