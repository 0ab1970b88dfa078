"""Shared by the studies: run a sweep through the real command line and gather its results."""

from __future__ import annotations

import json
import os
import platform
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
# projection D), one discriminator update per generator update, Adam 8e-4 (why: the
# synthetic_mnist study's README and run.py).
CGAN_RECIPE = [
    "model=cgan",
    "model.arch=dcgan",
    "model.n_critic=1",
    "model.optimizer_g.lr=0.0008",
    "model.optimizer_d.lr=0.0008",
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


def machine_description() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core {platform.machine()} CPU, {gpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"


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
