"""Re-score a checkpoint: ``python -m src.eval ckpt_path=<run>/checkpoints/best.ckpt``.

The model and data come from the run config stored in the checkpoint; the hardware, loggers and
(optionally) the metrics come from this command's config. ``metrics=<option>`` re-scores with
another metrics config; without it the checkpoint's own metrics config is used, so the test
scores of the training run are reproduced. ``data_dir=...`` points at the data on this machine.
Writes its own run directory with ``metrics.json``.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict

from src.models.base import CONFIG_KEY
from src.utils.build import (
    build_collection,
    build_metrics,
    build_run_parts,
    build_trainer,
    collect_protocol,
    read_checkpoint,
)
from src.utils.config_check import check_callable_args
from src.utils.entry import hydra_task
from src.utils.run import TaskResult, flat_numbers


def eval_options(ckpt_path: str, data_dir: str | None, seed: int | None) -> None:
    """The top-level options of ``conf/eval.yaml``."""


def run_config_for_eval(cfg: DictConfig, checkpoint: dict) -> DictConfig:
    """The checkpoint's run config with this command's hardware, logger, paths (and metrics)."""
    stored = OmegaConf.create(checkpoint[CONFIG_KEY])
    with open_dict(stored):
        for key in ("hardware", "logger", "paths", "task_name"):
            stored[key] = cfg.get(key)
        if cfg.get("metrics") is not None:
            stored["metrics"] = cfg.metrics
        if cfg.get("data_dir"):
            stored.data.data_dir = cfg.data_dir
        if cfg.get("seed") is not None:
            stored.seed = cfg.seed
    return stored


def evaluate(cfg: DictConfig) -> TaskResult:
    check_callable_args(eval_options, {k: cfg.get(k) for k in ("ckpt_path", "data_dir", "seed")}, path="")
    checkpoint = read_checkpoint(cfg.ckpt_path)
    run_cfg = run_config_for_eval(cfg, checkpoint)
    hardware, datamodule, model = build_run_parts(run_cfg)
    model.load_state_dict(checkpoint["state_dict"])
    model.on_load_checkpoint(checkpoint)
    del checkpoint
    callbacks = build_metrics(run_cfg, datamodule, hardware)
    trainer = build_trainer(run_cfg, hardware, callbacks, build_collection(run_cfg.get("logger")))
    results = trainer.test(model, datamodule=datamodule)
    result = TaskResult(
        metrics=flat_numbers(results[0] if results else {}), data_source=datamodule.data_source
    )
    result.protocol = {**collect_protocol(trainer), "tested_checkpoint": str(cfg.ckpt_path)}
    return result


main = hydra_task("eval")(evaluate)

if __name__ == "__main__":
    main()
