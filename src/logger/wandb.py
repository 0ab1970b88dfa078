"""Weights & Biases logging that never prompts.

Online when credentials exist (``WANDB_API_KEY`` or a ``~/.netrc`` entry from ``wandb login``),
offline otherwise with a one-line hint to ``wandb sync`` the run later. A run is named after the
job's command-line overrides; the jobs of one multirun share a group named after the sweep. The run
id is derived from the run directory, so a job requeued into its own directory (``ckpt_path=auto``)
continues its W&B run instead of starting a second one.
"""

from __future__ import annotations

import hashlib
import netrc
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger

from src.utils.logging import get_logger

log = get_logger(__name__)

# Overrides that say where a job writes, not what it is: left out of run names.
_UNINFORMATIVE = ("paths.", "hydra.", "logger.", "hardware.devices")


def wandb_logger(
    save_dir: str,
    project: str = "genlab",
    entity: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    name: str | None = None,
    mode: Literal["auto", "online", "offline", "disabled"] = "auto",
    log_model: bool | Literal["all"] = False,
    job_type: str = "train",
) -> WandbLogger:
    """Builds Lightning's ``WandbLogger``.

    Args:
        save_dir: the run directory; W&B files go to ``<save_dir>/wandb``.
        group: null -> the sweep's name in a multirun (every job its own run in that group).
        name: null -> derived from the job's overrides (``model=dcgan,model.optimizer_g.lr=0.0001``).
        mode: ``auto`` is online with credentials, offline without.
        log_model: upload checkpoints as model artifacts (``all``: every checkpoint).
    """
    if mode == "auto":
        mode = "online" if has_credentials() else "offline"
    if mode == "offline":
        log.info(
            f"W&B: logging offline to {save_dir}/wandb; upload later with `wandb sync {save_dir}/wandb/offline-run-*`"
        )
    os.environ.setdefault("WANDB_SILENT", "true")
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    job_name, sweep_group = _job_identity()
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        entity=entity,
        group=group or sweep_group,
        tags=list(tags or []),
        name=name or job_name,
        offline=mode == "offline",
        mode="disabled" if mode == "disabled" else None,
        log_model=log_model,
        job_type=job_type,
        id=run_id(save_dir),
        resume="allow",
    )


def run_id(save_dir: str) -> str:
    """The W&B run id of a run directory: the same on every DDP rank and after a requeue."""
    # Run directories carry microseconds, so their absolute paths do not repeat across runs.
    return hashlib.sha256(str(Path(save_dir).resolve()).encode()).hexdigest()[:16]


def finish_wandb_runs(loggers: list, failed: bool) -> None:
    """Closes this job's W&B run: the next job of a multirun must start its own, not reuse it."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish(exit_code=1 if failed else 0)


def has_credentials() -> bool:
    """True when W&B would authenticate without asking: an API key in the environment or netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _job_identity() -> tuple[str | None, str | None]:
    """(run name from the job's overrides, group of the multirun it belongs to)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, None
    hydra_cfg = HydraConfig.get()
    overrides = [o for o in hydra_cfg.overrides.task if not o.lstrip("+~").startswith(_UNINFORMATIVE)]
    name = ",".join(overrides) or None
    group = None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        group = f"{hydra_cfg.job.config_name}-{Path(hydra_cfg.sweep.dir).name}"
    return name, group
