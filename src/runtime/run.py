"""The life cycle every entry point shares: run the task, record ``metrics.json``, report errors.

``metrics.json`` is the run's result: a flat ``{"name": number}`` map plus ``status``,
``protocol`` and ``data_source``. It is written on global rank 0 at the end of every run,
failed runs and runs stopped by SIGTERM / SIGINT (``"status": "interrupted"``) included, and
replaced atomically so a reader never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from src.runtime.summary import console_summary
from src.utils import signals
from src.utils.errors import TrainingFailure, UserError
from src.utils.logging import get_logger

log = get_logger(__name__)

METRICS_FILE = "metrics.json"


@dataclass
class TaskResult:
    """What a task hands back to the run record."""

    metrics: dict[str, float] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    data_source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The command's own headline lines for the console (an audit's AUCs, an inpainting's PSNR); the
    # scores' table and verdict are added from ``protocol`` (:mod:`src.runtime.summary`).
    summary: list[str] = field(default_factory=list)


def report_error(message: str) -> None:
    """Prints the one-line ``Error:`` report (rank 0 only)."""
    if getattr(rank_zero_only, "rank", 0) == 0:
        print(f"Error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def announce(message: str) -> None:
    """One line on stdout from global rank 0 (run directory at start and end of every command)."""
    if getattr(rank_zero_only, "rank", 0) == 0:
        print(message, flush=True)


def write_metrics_json(
    output_dir: str | Path, status: str, result: TaskResult | None = None, reason: str | None = None
) -> Path | None:
    """Writes ``<output_dir>/metrics.json`` atomically on global rank 0; returns its path."""
    if getattr(rank_zero_only, "rank", 0) != 0:
        return None
    result = result or TaskResult()
    payload: dict[str, Any] = {name: _number(value) for name, value in sorted(result.metrics.items())}
    payload["status"] = status
    if reason is not None:
        payload["reason"] = " ".join(str(reason).split())
    payload["protocol"] = result.protocol
    payload["warnings"] = collect_warnings(result.protocol)
    payload["data_source"] = result.data_source
    payload.update(result.extra)
    path = Path(output_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{METRICS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    announce(f"{status}: {path}")
    return path


def collect_warnings(protocol: Mapping[str, Any]) -> list[str]:
    """Every ``warnings`` entry of the protocol and its per-stage parts, each once, stage-prefixed."""
    found: list[str] = []
    for stage, entry in [("", protocol), *((k, v) for k, v in protocol.items() if isinstance(v, Mapping))]:
        for warning in entry.get("warnings", []) if isinstance(entry, Mapping) else []:
            text = f"{stage}: {warning}" if stage else warning
            if text not in found:
                found.append(text)
    return found


def read_metrics_json(output_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(output_dir) / METRICS_FILE).read_text())


def run_task(task: Callable[[DictConfig], TaskResult], cfg: DictConfig) -> float | None:
    """Runs ``task`` and records its outcome; returns the sweep objective (``optimized_metric``).

    Single runs exit non-zero on failure (2 for user mistakes, 1 otherwise). In a multirun a failed
    job is recorded and reported, and the sweep goes on: the job returns ``objective_penalty``.
    SIGTERM and SIGINT stop any run, a sweep's too, with ``"status": "interrupted"`` and exit code
    143 / 130 (:mod:`src.utils.signals`).
    """
    output_dir = cfg.paths.output_dir
    announce(f"run directory: {output_dir}")
    with signals.interruptible():
        try:
            return _run(task, cfg, output_dir)
        except BaseException:
            # Lightning ends a KeyboardInterrupt in `sys.exit(1)` and its own SIGTERM check in a
            # SystemExit, and a library may turn one into its own error: the signal received, not
            # the exception, says this was an interrupt.
            signum = signals.received()
            if signum is None:
                raise
            _interrupted(output_dir, signum)
    return None


def _interrupted(output_dir: str, signum: int) -> None:
    reason = f"stopped by {signals.describe(signum)}"
    last = Path(output_dir) / "checkpoints" / "last.ckpt"
    if last.is_file():
        reason += f"; resume with ckpt_path={last}"
    write_metrics_json(output_dir, "interrupted", TaskResult(), reason=reason)
    sys.exit(signals.exit_code(signum))


def _run(task: Callable[[DictConfig], TaskResult], cfg: DictConfig, output_dir: str) -> float | None:
    multirun = _is_multirun()
    rank = getattr(rank_zero_only, "rank", 0)
    partial = TaskResult()
    try:
        result = task(cfg)
    except UserError as exc:
        return _fail(cfg, output_dir, str(exc), partial, multirun, rank, exit_code=2)
    except TrainingFailure as exc:
        return _fail(
            cfg, output_dir, str(exc), getattr(exc, "result", None) or partial, multirun, rank, exit_code=1
        )
    except Exception as exc:
        if signals.received() is not None:
            raise  # an interrupt that a library reported as its own error
        reason = f"{type(exc).__name__}: {exc}"
        write_metrics_json(output_dir, "failed", partial, reason=reason)
        if multirun or rank != 0:
            log.error("".join(traceback.format_exception(exc)))
            return _penalty(cfg) if multirun else None
        raise

    for line in console_summary(result.metrics, result.protocol, result.summary):
        announce(line)
    write_metrics_json(output_dir, "ok", result)
    metric = cfg.get("optimized_metric")
    if not metric or rank != 0:
        return None
    value = result.metrics.get(metric)
    if value is None or not math.isfinite(float(value)):
        logged = ", ".join(sorted(result.metrics)) or "none"
        message = f"optimized_metric={metric} has no finite value in this run (logged: {logged})."
        write_metrics_json(output_dir, "failed", result, reason=message)
        return _fail(cfg, output_dir, message, result, multirun, rank, exit_code=1, already_written=True)
    return float(value)


def _fail(
    cfg: DictConfig,
    output_dir: str,
    message: str,
    result: TaskResult,
    multirun: bool,
    rank: int,
    exit_code: int,
    already_written: bool = False,
) -> float | None:
    if not already_written:
        write_metrics_json(output_dir, "failed", result, reason=message)
    report_error(message)
    if multirun:
        return _penalty(cfg)
    if rank != 0:
        # Worker processes of a DDP run leave reporting to rank 0: a non-zero exit here would make
        # Lightning's process observer kill rank 0 before it has written metrics.json.
        return None
    sys.exit(exit_code)


def _penalty(cfg: DictConfig) -> float | None:
    penalty = cfg.get("objective_penalty")
    return None if penalty is None else float(penalty)


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _number(value: Any) -> float | int | None:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


def flat_numbers(mapping: Mapping[str, Any]) -> dict[str, float]:
    """Keeps the scalar numeric entries of a metrics mapping (tensors become floats)."""
    out: dict[str, float] = {}
    for name, value in mapping.items():
        if hasattr(value, "numel") and value.numel() != 1:
            continue
        try:
            out[name] = float(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError):
            continue
    return out
