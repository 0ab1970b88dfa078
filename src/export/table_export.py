"""Turns a trained table model into a synthetic table (``data.csv`` + ``data.parquet``; see
:mod:`src.export.table_writer`), with the manifest, the dataset card and the checksums of image exports.

* A plain export draws ``n`` rows from the model: every column, the target included, comes from the
  model's own joint distribution (``label_source: model``). ``labels=proportional`` or a list of
  classes asks for those target values instead (conditional sampling; ``label_source: conditional``).
* ``fill=balance`` (or ``fill.target=N``) brings every class of the target up to the target count
  with rows generated for that class, next to the real training rows (``source`` column), as the
  image fill does (:mod:`src.export.fill`).
* Conditional rows pass the per-class gate (:mod:`src.export.gate`): a classifier trained on the
  real training rows (:func:`src.metrics.tabular_classifier.table_gate_classifier`) predicts each
  generated row's target from its other columns; the agreement per class sits beside that
  classifier's recall on the real test rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from src.export.exporter import ExportOptions, build_table_manifest
from src.export.fill import fill_plan
from src.export.gate import ClassGate, GateClassifier, finish_gate, missing_classifier, skipped_gate
from src.export.labels import plan_labels
from src.export.table_writer import TableDatasetWriter
from src.export.writer import check_out_dir
from src.models.base import GenerativeModule
from src.utils.errors import UserError
from src.utils.logging import get_logger
from src.utils.tables import TableSchema

log = get_logger(__name__)

# (decoded rows, class_balance=...) -> (scores, protocol) against the real test split.
TableScoreFunction = Callable[..., tuple[dict[str, float], dict[str, Any]]]


def export_table(
    model: GenerativeModule,
    schema: TableSchema,
    options: ExportOptions,
    provenance: dict[str, Any],
    train_split: tuple[Tensor, Tensor] | None = None,
    scorer: TableScoreFunction | None = None,
    auditor: TableScoreFunction | None = None,
    gate_classifier: GateClassifier | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Generates the rows of ``options`` and writes them to ``options.out_dir``; returns (dir, manifest)."""
    if model.data_kind != "table":
        raise UserError(f"model={model.model_name} does not generate table rows.")
    out_dir = Path(options.out_dir).expanduser()
    check_out_dir(out_dir, options.overwrite)
    if options.format != "both":
        log.info(f"format={options.format} applies to image exports; tables are written as CSV and Parquet")
    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(options.seed)
    gate_mode, min_agreement = options.gate_settings()
    class_names = schema.class_names

    fill_record: dict[str, Any] | None = None
    real_rows: Tensor | None = None
    if options.fill is not None:
        if schema.target is None or train_split is None:
            raise UserError(
                "fill needs a labelled table: set data.target to the column whose classes to fill."
            )
        real_rows, real_labels = train_split[0].cpu(), train_split[1].cpu()
        have, target, wanted = fill_plan(real_labels, len(class_names), options.fill.target)
        labels = torch.cat([torch.full((count,), c, dtype=torch.long) for c, count in enumerate(wanted)])
        label_source = "conditional"
        fill_record = {
            "target": options.fill.target,
            "include_real": options.include_real,
            "real_per_class": have,
            "target_per_class": target,
            "missing_per_class": wanted,
        }
        log.info(
            f"fill.target={options.fill.target}: real rows per class {have} -> {target}; generating {wanted}"
        )
    elif options.labels != "balanced":
        if schema.target is None:
            raise UserError(f"labels={options.labels} needs a target column: set data.target.")
        train_labels = train_split[1] if train_split is not None else None
        labels = plan_labels(options.labels, options.n, class_names, train_labels)
        wanted = torch.bincount(labels, minlength=len(class_names)).tolist()
        label_source = "conditional"
    else:
        labels, wanted, label_source = None, None, "model"

    gate = None
    if labels is not None:
        if gate_classifier is None:
            missing_classifier(gate_mode)
        else:
            gate = ClassGate(gate_classifier, class_names, wanted, gate_mode, min_agreement)

    def sample(batch_labels: Tensor | None, count: int) -> Tensor:
        given = batch_labels.to(model.device) if batch_labels is not None else None
        return model.sample(count, labels=given, generator=generator).cpu()

    # Drawn before anything is written: a refused gate leaves no directory behind.
    parts: list[Tensor] = []
    total = len(labels) if labels is not None else options.n
    for start in range(0, total, options.batch_size):
        count = min(options.batch_size, total - start)
        batch_labels = labels[start : start + count] if labels is not None else None
        rows = sample(batch_labels, count)
        if gate is not None:
            rows, _ = gate.keep(rows, batch_labels)
        parts.append(rows)
    if gate is not None:
        for rows, _ in gate.top_up(lambda b: sample(b, len(b)), options.batch_size, options.max_draws):
            parts.append(rows)
    report = None
    if gate is not None:
        report = finish_gate(gate)
    elif labels is not None:
        report = skipped_gate(gate_mode, min_agreement, "no classifier of the real rows was available")
    synthetic = schema.decode(torch.cat(parts) if parts else torch.zeros(0, len(schema)))

    include_real = fill_record is not None and options.include_real
    with TableDatasetWriter(out_dir, schema, with_source=fill_record is not None) as writer:
        if include_real and real_rows is not None:
            writer.add(schema.decode(real_rows), source="real")
        writer.add(synthetic, source="synthetic")
        manifest = build_table_manifest(model, schema, writer, options, label_source, provenance)
        if fill_record is not None:
            generated = writer.source_counts["synthetic"]
            fill_record["generated_per_class"] = list(generated)
            manifest["fill"] = fill_record
        if report is not None:
            manifest["gate"] = report
        if scorer is not None and options.score and len(synthetic) >= 2:
            # Asked-for classes (a fill, a label plan) are not the model's: class balance is not judged.
            manifest["scores"], manifest["score_protocol"] = scorer(
                synthetic, class_balance=label_source == "model"
            )
        if auditor is not None and options.audit:
            audit_scores, audit_protocol = auditor(synthetic)
            manifest["audit"] = {"scores": audit_scores, "protocol": audit_protocol}
        path = writer.finish(manifest)
    log.info(f"exported {writer.count} rows to {path}")
    return path, manifest
