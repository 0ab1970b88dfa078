"""Train the domain feature extractor ahead of time: ``python -m src.train_evaluator data=mnist``.

Training runs do this on first use; this entry point does it on its own (before a sweep, or on a
GPU node for a CPU cluster) and reports the classifier's accuracy. The extractor options are those
of ``metrics=domain`` (``metrics.extractor_arch``, ``metrics.extractor_epochs``,
``metrics.extractor_seed``, ``paths.cache_dir``); ``retrain=true`` ignores a cached one.
``metrics.json`` records the val/test accuracy and, in its protocol, the weights hash and file.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from src.metrics import DomainMetrics, load_extractor
from src.runtime.build import build, build_datamodule, build_hardware
from src.runtime.config_check import check_config, task_options
from src.runtime.entry import hydra_task
from src.runtime.run import TaskResult
from src.utils.errors import UserError


@dataclass
class TrainEvaluatorOptions:
    """The top-level keys of ``conf/train_evaluator.yaml``."""

    task_name: str
    retrain: bool


def train_evaluator(cfg: DictConfig) -> TaskResult:
    task_options(TrainEvaluatorOptions, cfg)
    check_config(cfg, ("hardware", "data", "metrics"))
    hardware = build_hardware(cfg)
    datamodule = build_datamodule(cfg)
    metrics = build(cfg.metrics) if cfg.get("metrics") else None
    if not isinstance(metrics, DomainMetrics):
        raise UserError("src.train_evaluator trains the domain feature extractor: use metrics=domain.")
    if datamodule.kind != "image":
        raise UserError(
            f"data={datamodule.name} holds points: its mode statistics need no feature extractor."
        )
    datamodule.prepare_data()
    extractor = load_extractor(
        datamodule,
        metrics.cache_dir,
        metrics.extractor_arch,
        metrics.recipe,
        hardware.device(),
        retrain=bool(cfg.retrain),
    )
    meta = extractor.meta
    return TaskResult(
        metrics={
            "extractor/test_accuracy": meta["test_accuracy"],
            "extractor/val_accuracy": meta["val_accuracy"],
            "extractor/train_seconds": meta["train_seconds"],
        },
        protocol={
            **extractor.describe(),
            "extractor_file": meta["path"],
            "dataset": meta["dataset"],
            "n_train": meta["n_train"],
            "train_fingerprint": meta["train_fingerprint"],
            "recipe": meta["recipe"],
        },
        data_source=datamodule.data_source,
    )


main = hydra_task("train_evaluator")(train_evaluator)

if __name__ == "__main__":
    main()
