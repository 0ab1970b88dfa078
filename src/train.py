"""Train a model: ``python -m src.train model=vae data=mnist``.

Fits, tests the best checkpoint, writes ``metrics.json`` and returns ``optimized_metric`` to a
sweeper. ``ckpt_path=<run>/checkpoints/last.ckpt`` resumes a run (step count, optimizers, EMA);
``ckpt_path=auto`` resumes from the job directory's own ``last.ckpt`` if present (cluster requeues).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from omegaconf import DictConfig

from src.export.exporter import ExportOptions
from src.export.pipeline import export_trained_model
from src.export.writer import check_out_dir
from src.logger import finish_wandb_runs
from src.models.checkpoint import read_checkpoint
from src.privacy import DifferentialPrivacy
from src.runtime.build import (
    build_collection,
    build_metrics,
    build_privacy,
    build_run_parts,
    build_trainer,
    check_sweep_direction,
    collect_protocol,
    collect_stability,
    log_hyperparameters,
    prepare_metrics,
)
from src.runtime.config_check import check_config, task_options
from src.runtime.entry import hydra_task
from src.runtime.run import TaskResult, flat_numbers
from src.utils import signals
from src.utils.errors import TrainingFailure, UserError
from src.utils.logging import get_logger

log = get_logger(__name__)


@dataclass
class TrainOptions:
    """The top-level keys of ``conf/train.yaml`` (checked before a run)."""

    task_name: str
    tags: list[str]
    seed: int | None
    ckpt_path: str | None
    test: bool
    optimized_metric: str | None
    objective_penalty: float | None


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``ckpt_path=auto`` resumes from this run directory's own ``last.ckpt`` when there is one.

    A requeued cluster job (same job directory) thereby continues where it stopped, and starts
    fresh the first time.
    """
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path != "auto":
        return ckpt_path
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if last.is_file():
        log.info(f"ckpt_path=auto: resuming from {last}")
        return str(last)
    return None


def planned_export(cfg: DictConfig) -> ExportOptions | None:
    """The export to run after training (``export.enabled=true``), checked before training starts."""
    if not cfg.get("export") or not cfg.export.get("enabled"):
        return None
    options = task_options(ExportOptions, cfg.export, path="export")
    if options.out_dir is None:
        options.out_dir = str(Path(cfg.paths.output_dir) / "synthetic")
    check_out_dir(Path(options.out_dir), options.overwrite)
    return options


def train(cfg: DictConfig) -> TaskResult:
    task_options(TrainOptions, cfg)
    check_sweep_direction(cfg)
    ckpt_path = resolve_ckpt_path(cfg)
    if ckpt_path:
        read_checkpoint(ckpt_path)
    export = planned_export(cfg)
    check_config(cfg, ("privacy",))
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
    hardware, datamodule, model = build_run_parts(cfg, settle_monitors=True)
    privacy = build_privacy(cfg, model, hardware)
    metrics = build_metrics(cfg, datamodule, hardware, prepare=False)
    callbacks = build_collection(cfg.get("callbacks")) + metrics
    if privacy is not None:
        # Needs the training split's size; refuses a schedule over budget before any training.
        privacy.plan(model, datamodule, cfg.trainer)
        callbacks.append(privacy)
    prepare_metrics(metrics, datamodule, hardware)
    trainer = build_trainer(cfg, hardware, callbacks, build_collection(cfg.get("logger")), model)
    log_hyperparameters(trainer, cfg, model)

    # The data description (subset and train class counts included) goes into metrics.json.
    result = TaskResult(data_source=datamodule.data_source, extra={"data": datamodule.describe()})
    failed = True
    try:
        started = time.perf_counter()
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        # Wall seconds of the fit (data set-up and a table model's preprocessing included) and of
        # the test: metrics.json "timing", what studies compare fit times by.
        result.extra["timing"] = {"fit_s": round(time.perf_counter() - started, 3)}
        # A signal the fit deferred but did not reach a batch boundary for (it came during the last
        # validation) stops the run here, before testing and exporting.
        signals.raise_if_interrupted()
        result.extra["data"] = datamodule.describe()
        fit_metrics = dict(trainer.callback_metrics)
        test_metrics: dict[str, Any] = {}
        if cfg.get("test"):
            best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
            if best is None:
                log.warning(
                    "no best checkpoint was written (fast_dev_run or no validation): testing the current weights"
                )
            started = time.perf_counter()
            results = trainer.test(model, datamodule=datamodule, ckpt_path=best)
            result.extra["timing"]["test_s"] = round(time.perf_counter() - started, 3)
            test_metrics = results[0] if results else {}
            if best:
                result.protocol["tested_checkpoint"] = best
        if export is not None and trainer.global_rank == 0:
            best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
            if best is None:
                raise UserError(
                    "export.enabled=true needs a checkpoint: keep the model_checkpoint callback and validation on."
                )
            checkpoint = read_checkpoint(best)
            model.load_state_dict(checkpoint["state_dict"])
            model.on_load_checkpoint(checkpoint)
            model.to(hardware.device())
            out_dir, manifest = export_trained_model(
                model, datamodule, cfg, best, export, trainer.loggers, next(iter(metrics), None)
            )
            result.protocol["export"] = {"out_dir": str(out_dir), **manifest.get("score_protocol", {})}
            if manifest.get("gate"):
                result.protocol["export_gate"] = manifest["gate"]  # its warnings reach metrics.json
        failed = False
    except TrainingFailure as exc:
        exc.result = _collect(trainer, result, {}, privacy)
        raise
    finally:
        finish_wandb_runs(trainer.loggers, failed)
    return _collect(trainer, result, {**fit_metrics, **test_metrics}, privacy)


def _collect(
    trainer: pl.Trainer, result: TaskResult, metrics: dict[str, Any], privacy: DifferentialPrivacy | None
) -> TaskResult:
    result.metrics = flat_numbers(metrics or trainer.callback_metrics)
    result.metrics["global_step"] = trainer.global_step
    result.metrics["epoch"] = trainer.current_epoch
    if privacy is not None:
        # The final spend, exactly (the logged value may predate the last update).
        record = privacy.record()
        result.metrics["privacy/epsilon"] = record["epsilon"]
        result.extra["privacy"] = record
    result.protocol.update(collect_protocol(trainer))
    stability, protocol = collect_stability(trainer)
    result.metrics.update(stability)
    if protocol:
        result.protocol["stability"] = protocol
    return result


main = hydra_task("train")(train)

if __name__ == "__main__":
    main()
