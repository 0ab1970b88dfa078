"""Re-score a checkpoint: ``python -m src.eval ckpt_path=<run>/checkpoints/best.ckpt``.

The model and data come from the run config stored in the checkpoint; the hardware, loggers and
(optionally) the metrics come from this command's config. ``metrics=<option>`` re-scores with
another metrics config; without it the checkpoint's own metrics config is used, so the test
scores of the training run are reproduced. ``data_dir=...`` points at the data on this machine.
Writes its own run directory with ``metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from src.logger import finish_wandb_runs
from src.runtime.build import (
    build_collection,
    build_metrics,
    build_trainer,
    collect_protocol,
    load_trained_run,
)
from src.runtime.config_check import task_options
from src.runtime.entry import hydra_task
from src.runtime.run import TaskResult, flat_numbers


@dataclass
class EvalOptions:
    """The top-level keys of ``conf/eval.yaml``."""

    task_name: str
    ckpt_path: str
    data_dir: str | None
    seed: int | None


def evaluate(cfg: DictConfig) -> TaskResult:
    task_options(EvalOptions, cfg)
    run = load_trained_run(cfg, cfg.ckpt_path)
    run_cfg, datamodule, model = run.run_cfg, run.datamodule, run.model
    callbacks = build_metrics(run_cfg, datamodule, run.hardware)
    trainer = build_trainer(run_cfg, run.hardware, callbacks, build_collection(run_cfg.get("logger")), model)
    try:
        results = trainer.test(model, datamodule=datamodule)
    finally:
        finish_wandb_runs(trainer.loggers, failed=False)
    result = TaskResult(
        metrics=flat_numbers(results[0] if results else {}),
        data_source=datamodule.data_source,
        extra={"data": datamodule.describe()},
    )
    result.protocol = {**collect_protocol(trainer), "tested_checkpoint": str(cfg.ckpt_path)}
    return result


main = hydra_task("eval")(evaluate)

if __name__ == "__main__":
    main()
