"""Utility report: ``python -m src.evaluate_dataset synthetic=<dir> data=mnist``.

Verifies the exported dataset, trains the framework's domain classifier on (a) the synthetic
images, (b) as many real ones, (c) both, tests each on the real test split (Classification
Accuracy Score), scores the set's fidelity and memorization against the real data, and writes
``<dir>.report.json`` and ``<dir>.report.md`` beside the dataset (and ``metrics.json`` in the run
directory, and the figures to the logger). Only the export's synthetic images count as synthetic
(a gap-filling export also holds real ones).

``augmentation.enabled=true`` adds the augmentation report (:mod:`src.metrics.augmentation`):
real / real + synthetic at several ratios / real + fill / synthetic / classic augmentation arms and
the oversample / class-weight / SMOTE baselines, several seeds, a fixed share of real images in
every batch, synthetic labels from the export or a teacher; written to
``<dir>.augmentation.{json,md,png}``. The real training split is the one the export was made from:
a ``data.subset`` recorded in its manifest applies unless the command sets its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from src.export.reader import is_table_export, read_export, read_table_export
from src.logger import finish_wandb_runs
from src.logger.images import log_figure
from src.metrics import ScoreOptions, score_samples
from src.metrics.augmentation import Protocol, SyntheticLabels, augmentation_report
from src.metrics.augmentation_output import flat_augmentation, headline, write_augmentation_report
from src.metrics.classifier_networks import ClassifierArch
from src.metrics.classifier_training import TrainingRecipe
from src.metrics.table_report import flat_table_report, table_utility_report
from src.metrics.utility import classification_accuracy_score
from src.metrics.verdict import markdown_table
from src.runtime.build import build_collection, build_datamodule, build_hardware
from src.runtime.config_check import check_config, task_options
from src.runtime.entry import hydra_task
from src.runtime.run import TaskResult
from src.utils.errors import UserError
from src.utils.logging import get_logger
from src.utils.types import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, UnitInterval

log = get_logger(__name__)


@dataclass
class ClassifierOptions:
    """``classifier``: the domain classifier trained for the Classification Accuracy Score."""

    arch: ClassifierArch
    epochs: PositiveInt
    seed: int


@dataclass
class EvaluateDatasetOptions:
    """The top-level keys of ``conf/evaluate_dataset.yaml``."""

    task_name: str
    synthetic: str
    scores: bool


@dataclass
class AugmentationOptions:
    """``augmentation``: the augmentation report's arms (``conf/evaluate_dataset.yaml``)."""

    enabled: bool
    seeds: list[int]
    ratios: list[PositiveFloat]
    classic: bool
    min_steps: PositiveInt
    real_share: Fraction
    synthetic_labels: SyntheticLabels
    min_confidence: UnitInterval
    synthetic_weight: NonNegativeFloat
    patience: PositiveInt | None


def evaluate_dataset(cfg: DictConfig) -> TaskResult:
    task_options(EvaluateDatasetOptions, cfg)
    task_options(ClassifierOptions, cfg.classifier, path="classifier")
    augmentation = task_options(AugmentationOptions, cfg.augmentation, path="augmentation")
    if augmentation.enabled and not augmentation.seeds:
        raise UserError("augmentation.seeds=[] trains nothing: give seeds, e.g. augmentation.seeds=[0,1,2].")
    check_config(cfg, ("hardware", "data", "logger"))
    root = Path(cfg.synthetic).expanduser()
    if is_table_export(root):
        return evaluate_table(cfg, root, augmentation)
    exported = read_export(root)
    if not exported.labelled:
        raise UserError(
            f"synthetic={root} has no labels (label_source={exported.manifest.get('label_source')}): the "
            "Classification Accuracy Score needs a conditional model's export or pseudo-labels."
        )
    synthetic = exported.only("synthetic")
    if len(synthetic[0]) == 0:
        raise UserError(
            f"synthetic={root} holds no synthetic images (nothing was missing to fill): nothing to judge."
        )
    apply_export_subset(cfg, exported.manifest)
    hardware = build_hardware(cfg)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup()
    recipe = TrainingRecipe(epochs=cfg.classifier.epochs, seed=cfg.classifier.seed)
    utility = classification_accuracy_score(
        synthetic, datamodule, recipe, cfg.classifier.arch, hardware.device()
    )
    report: dict[str, Any] = {
        "synthetic": str(root.resolve()),
        "label_source": exported.manifest.get("label_source"),
        "checkpoint": exported.manifest.get("checkpoint"),
        "data": datamodule.describe(),
        "utility": utility,
    }
    if cfg.scores:
        scores, protocol = score_samples(
            exported.images,
            datamodule,
            "test",
            cache_dir=cfg.paths.cache_dir,
            options=ScoreOptions(),
            device=hardware.device(),
        )
        report["scores"], report["score_protocol"] = scores, protocol
    json_path, md_path = write_report(root, report)
    log.info(f"report: {md_path} and {json_path}")

    metrics = flat_report(report)
    figures = {}
    headlines: list[str] = []
    if augmentation.enabled:
        augmented = augmentation_report(
            datamodule.split("train"),
            datamodule.split("val"),
            datamodule.split("test"),
            synthetic,
            int(datamodule.num_classes or 0),
            datamodule.class_names,
            recipe,
            cfg.classifier.arch,
            seeds=augmentation.seeds,
            ratios=augmentation.ratios,
            classic=augmentation.classic,
            device=hardware.device(),
            protocol=Protocol(
                real_share=augmentation.real_share,
                synthetic_labels=augmentation.synthetic_labels,
                min_confidence=augmentation.min_confidence,
                synthetic_weight=augmentation.synthetic_weight,
                patience=augmentation.patience,
                min_steps=augmentation.min_steps,
            ),
        )
        augmented["data"] = datamodule.describe()
        paths = write_augmentation_report(root, augmented)
        log.info(f"augmentation report: {paths['md']}")
        metrics.update(flat_augmentation(augmented))
        figures["augmentation"] = paths["png"]
        headlines = [*headline(augmented), f"augmentation report: {paths['md']}"]

    loggers = build_collection(cfg.get("logger"))
    try:
        for logger in loggers:
            logger.log_hyperparams({"report": report})
            logger.log_metrics(metrics)
        for key, path in figures.items():
            log_figure(loggers, key, path)
    finally:
        finish_wandb_runs(loggers, failed=False)
    acc = utility["accuracy"]
    summary = [
        f"utility of {root} (real test split, {utility['n_test']} images): CAS {acc['synthetic']:.3f}, "
        f"real only (as many) {acc['real']:.3f}, real + synthetic {acc['real+synthetic']:.3f}",
        f"report: {md_path}",
        *headlines,
    ]
    return TaskResult(
        metrics=metrics,
        protocol=report.get("score_protocol", {}),
        data_source=datamodule.data_source,
        extra={"data": datamodule.describe()},
        summary=summary,
    )


def evaluate_table(cfg: DictConfig, root: Path, augmentation: AugmentationOptions) -> TaskResult:
    """A table export: the table scores against the real test split (TSTR beside train-on-real
    included) and, with ``augmentation.enabled=true``, the table augmentation report's arms
    (:mod:`src.metrics.table_report`). The image classifier's options do not apply."""
    exported = read_table_export(root)
    apply_export_subset(cfg, exported.manifest)
    build_hardware(cfg)
    datamodule = build_datamodule(cfg)
    if datamodule.kind != "table":
        raise UserError(
            f"synthetic={root} is a table export: pass its table as data=<table> (not data={datamodule.name})."
        )
    datamodule.prepare_data()
    datamodule.setup()
    synthetic = exported.only("synthetic")
    report, summary = table_utility_report(
        synthetic, exported.manifest, datamodule, root, augmentation.seeds if augmentation.enabled else None
    )
    metrics = flat_table_report(report)
    loggers = build_collection(cfg.get("logger"))
    try:
        for logger in loggers:
            logger.log_hyperparams({"report": {k: v for k, v in report.items() if k != "augmentation"}})
            logger.log_metrics(metrics)
    finally:
        finish_wandb_runs(loggers, failed=False)
    return TaskResult(
        metrics=metrics,
        protocol=report["score_protocol"],
        data_source=datamodule.data_source,
        extra={"data": datamodule.describe()},
        summary=summary,
    )


def flat_report(report: dict[str, Any]) -> dict[str, float]:
    utility = report["utility"]
    metrics = {
        f"utility/accuracy_{name.replace('+', '_')}": value for name, value in utility["accuracy"].items()
    }
    metrics["utility/cas_ratio"] = utility["cas_ratio"]
    metrics["utility/augmentation_gain"] = utility["augmentation_gain"]
    metrics.update({f"scores/{name}": value for name, value in report.get("scores", {}).items()})
    return {k: v for k, v in metrics.items() if v is not None}


def write_report(root: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """``<root>.report.json`` and ``<root>.report.md`` (siblings: the dataset's checksums stay valid)."""
    json_path = root.parent / f"{root.name}.report.json"
    md_path = root.parent / f"{root.name}.report.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    utility = report["utility"]
    acc = utility["accuracy"]
    lines = [
        f"# Utility of `{root.name}`",
        "",
        f"Labels: {report['label_source']}. Classifier: {utility['classifier']['arch']}, "
        f"{utility['classifier']['recipe']['epochs']} epochs; tested on the real test split ({utility['n_test']} images).",
        "",
        "| trained on | images | test accuracy |",
        "|---|---|---|",
        f"| synthetic only (CAS) | {utility['n_synthetic']} | {acc['synthetic']:.4f} |",
        f"| real only: a random {utility['n_real']} of the real training images, as many as synthetic "
        f"(seed {utility['classifier']['recipe']['seed']}) | {utility['n_real']} | {acc['real']:.4f} |",
        f"| real + synthetic | {utility['n_real'] + utility['n_synthetic']} | {acc['real+synthetic']:.4f} |",
        "",
        f"CAS / real accuracy: **{utility['cas_ratio']:.3f}**; augmentation gain: **{utility['augmentation_gain']:+.4f}**.",
        "",
        "These three classifiers share one seed and the classifier's epochs; the augmentation report "
        "(`augmentation.enabled=true`, `<dir>.augmentation.md`) trains its `real` arm on the whole real "
        "split over several seeds with its own budget and real share: another protocol, another number.",
    ]
    warnings = report.get("score_protocol", {}).get("warnings", [])
    if warnings:
        lines += ["", "**Warnings** (the scores below are less trustworthy):", ""]
        lines += [f"- {warning}" for warning in warnings]
    if "scores" in report:
        protocol = report["score_protocol"]
        lines += ["", *markdown_table(report["scores"], protocol)]
        lines += ["", f"Protocol: extractor `{protocol.get('extractor')}` "
                      f"sha256 `{str(protocol.get('extractor_sha256'))[:12]}`."]  # fmt: skip
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def apply_export_subset(cfg: DictConfig, manifest: dict[str, Any]) -> None:
    """The real split is the one the export was made from: its ``data.subset``, unless the command sets one.

    The training run's ``data.batch_size`` comes along: it fitted that (possibly tiny) split.
    """
    subset = (manifest.get("data") or {}).get("subset")
    own = cfg.data.get("subset")
    if not subset or (own and any(value is not None for value in own.values())):
        return
    trained_batch = ((manifest.get("config") or {}).get("data") or {}).get("batch_size")
    with open_dict(cfg):
        cfg.data.subset = subset
        if trained_batch:
            cfg.data.batch_size = min(int(cfg.data.batch_size), int(trained_batch))
    log.info(f"data.subset={subset} from the export's manifest (the split its model was trained on)")


main = hydra_task("evaluate_dataset")(evaluate_dataset)

if __name__ == "__main__":
    main()
