"""Exporting a trained model: sample, label, score, write, and log the dataset artifact.

Shared by ``src.generate`` and ``src.train export.enabled=true`` (entry points never import each
other); the caller builds the model, data and metrics (``src.runtime``) and hands them in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.data.base import GenerativeDataModule
from src.export.artifacts import log_dataset_artifact
from src.export.exporter import ExportOptions, export_dataset
from src.export.gate import GateClassifier
from src.export.table_export import export_table
from src.metrics import Scorer, score_samples
from src.metrics.membership import membership_audit, model_white_box
from src.metrics.row_classifier import RowClassifier
from src.models.base import GenerativeModule
from src.utils.files import file_sha256


def export_provenance(
    datamodule: GenerativeDataModule, run_cfg: DictConfig, ckpt_path: str | Path
) -> dict[str, Any]:
    """Where an export comes from: the checkpoint (path, sha256), the data (subset included), the config."""
    return {
        "checkpoint": {"path": str(Path(ckpt_path).resolve()), "sha256": file_sha256(ckpt_path)},
        "data": datamodule.describe(),
        "config": OmegaConf.to_container(run_cfg, resolve=True),
    }


def export_trained_model(
    model: GenerativeModule,
    datamodule: GenerativeDataModule,
    run_cfg: DictConfig,
    ckpt_path: str | Path,
    options: ExportOptions,
    loggers: list,
    metrics: Any = None,
) -> tuple[Path, dict[str, Any]]:
    """The export shared by ``src.generate`` and ``src.train export.enabled=true``.

    ``model`` holds the checkpoint's weights on its device; ``metrics`` is the run's prepared
    metrics callback (None: unscored): its feature extractor scores the export against the real
    test split, and its domain classifier labels the samples of unconditional models
    (pseudo-labels, marked as such) and judges those of conditional ones (the per-class gate,
    :mod:`src.export.gate`, with its recall on the real test split beside it).
    """
    datamodule.setup()
    provenance = export_provenance(datamodule, run_cfg, ckpt_path)
    if model.data_kind == "table":
        out_dir, manifest = _export_table_model(model, datamodule, options, provenance, metrics)
        log_dataset_artifact(loggers, out_dir, manifest, ckpt_path)
        return out_dir, manifest
    extractor = getattr(metrics, "extractor", None)
    pseudo_labeler = class_probabilities = gate_classifier = None
    if extractor is not None and getattr(extractor, "has_class_logits", False):
        probabilities = lambda images: extractor.classify(images).softmax(1)  # noqa: E731
        # The test split: held out from the classifier's training and from the checkpoint's choice.
        gate_classifier = GateClassifier(
            probabilities, datamodule.split("test"), "test", extractor.describe()
        )
        if not model.num_classes:
            pseudo_labeler = lambda images: extractor.classify(images).argmax(1)  # noqa: E731
            class_probabilities = probabilities
            provenance["pseudo_labeler"] = extractor.describe()
    scorer = None
    if extractor is not None:
        shared = Scorer(extractor, metrics.options, metrics.cache_dir, metrics.batch_size)
        scorer = lambda images: score_samples(images, datamodule, "test", scorer=shared)  # noqa: E731

    def auditor(images):
        return membership_audit(
            datamodule, seed=options.seed, white_box=model_white_box(model), synthetic=images
        )

    out_dir, manifest = export_dataset(
        model,
        class_names=datamodule.class_names,
        train_labels=datamodule.split("train")[1] if datamodule.num_classes else None,
        options=options,
        provenance=provenance,
        pseudo_labeler=pseudo_labeler,
        scorer=scorer,
        auditor=auditor,
        train_split=datamodule.split("train") if options.fill is not None else None,
        class_probabilities=class_probabilities,
        min_scored=metrics.options.min_fake() if metrics is not None else 0,
        gate_classifier=gate_classifier,
    )
    log_dataset_artifact(loggers, out_dir, manifest, ckpt_path)
    return out_dir, manifest


def _export_table_model(
    model: GenerativeModule,
    datamodule: GenerativeDataModule,
    options: ExportOptions,
    provenance: dict[str, Any],
    metrics: Any,
) -> tuple[Path, dict[str, Any]]:
    """A table model's export: scored by the run's table metrics against the real test rows, its
    conditional rows judged by a classifier of the real training rows (the per-class gate)."""
    schema = datamodule.schema
    train = datamodule.split("train")
    gate_classifier = None
    # Only rows whose classes were asked for (a fill, a label plan) pass the gate.
    asked = options.fill is not None or options.labels != "balanced"
    if schema.target is not None and asked:
        classifier = RowClassifier(schema, seed=options.seed).fit(*train)
        gate_classifier = GateClassifier(
            classifier.probabilities,
            datamodule.split("test"),
            "test",
            classifier.describe(),
            name="a classifier of the target (gradient-boosted trees on the other columns)",
            unit="rows",
        )
    scorer = auditor = None
    if metrics is not None and hasattr(metrics, "score_frame"):
        scorer = lambda frame, **how: metrics.score_frame(frame, datamodule, "test", **how)  # noqa: E731
    if metrics is not None and hasattr(metrics, "audit_frame"):
        auditor = lambda frame: metrics.audit_frame(frame, datamodule)  # noqa: E731
    return export_table(
        model,
        schema,
        options,
        provenance,
        train_split=train,
        scorer=scorer,
        auditor=auditor,
        gate_classifier=gate_classifier,
    )
