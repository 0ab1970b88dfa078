"""Train a model: ``python -m src.train model=vae data=mnist``.

Fits, tests the best checkpoint, writes ``metrics.json`` and returns ``optimized_metric`` to a
sweeper. ``ckpt_path=<run>/checkpoints/last.ckpt`` resumes a run (step count, optimizers, EMA).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from omegaconf import DictConfig

from src.utils.build import (
    build_collection,
    build_run_parts,
    build_trainer,
    collect_protocol,
    log_hyperparameters,
    read_checkpoint,
)
from src.utils.config_check import check_callable_args
from src.utils.entry import hydra_task
from src.utils.errors import TrainingFailure
from src.utils.logging import get_logger
from src.utils.run import TaskResult, flat_numbers

log = get_logger(__name__)


def train_options(seed: int | None, ckpt_path: str | None, test: bool, optimized_metric: str | None) -> None:
    """The top-level options of ``conf/train.yaml`` (their types are checked before a run)."""


def train(cfg: DictConfig) -> TaskResult:
    check_callable_args(
        train_options,
        {k: cfg.get(k) for k in ("seed", "ckpt_path", "test", "optimized_metric")},
        path="",
    )
    if cfg.get("ckpt_path"):
        read_checkpoint(cfg.ckpt_path)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
    hardware, datamodule, model = build_run_parts(cfg)
    callbacks = build_collection(cfg.get("callbacks")) + build_collection(
        {"metrics": cfg.metrics} if cfg.get("metrics") else None
    )
    trainer = build_trainer(cfg, hardware, callbacks, build_collection(cfg.get("logger")), model)
    log_hyperparameters(trainer, cfg, model)

    result = TaskResult(data_source=datamodule.data_source)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except TrainingFailure as exc:
        exc.result = _collect(trainer, result, {})
        raise
    fit_metrics = dict(trainer.callback_metrics)

    test_metrics: dict[str, Any] = {}
    if cfg.get("test"):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        if best is None:
            log.warning(
                "no best checkpoint was written (fast_dev_run or no validation): testing the current weights"
            )
        results = trainer.test(model, datamodule=datamodule, ckpt_path=best)
        test_metrics = results[0] if results else {}
        if best:
            result.protocol["tested_checkpoint"] = best
    return _collect(trainer, result, {**fit_metrics, **test_metrics})


def _collect(trainer: pl.Trainer, result: TaskResult, metrics: dict[str, Any]) -> TaskResult:
    result.metrics = flat_numbers(metrics or trainer.callback_metrics)
    result.metrics["global_step"] = trainer.global_step
    result.metrics["epoch"] = trainer.current_epoch
    result.protocol.update(collect_protocol(trainer))
    return result


main = hydra_task("train")(train)

if __name__ == "__main__":
    main()
