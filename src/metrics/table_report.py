"""The utility report of an exported table (``python -m src.evaluate_dataset synthetic=<dir> data=<table>``).

The generated rows are scored against the real test split by the table scores
(:class:`src.metrics.TableScorer`: quality, detection, DCR, TSTR beside train-on-real, the verdict);
with ``augmentation.enabled=true`` the augmentation report's arms
(:mod:`src.metrics.table_augmentation`) run too. Files beside the dataset (its checksums stay
valid): ``<dir>.report.{json,md}`` and ``<dir>.augmentation.{json,md}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.data.base import GenerativeDataModule
from src.metrics.table_augmentation import table_augmentation_markdown, table_augmentation_report
from src.metrics.table_callback import TableScorer
from src.metrics.verdict import markdown_table
from src.utils.errors import UserError


def table_utility_report(
    synthetic: pd.DataFrame,
    manifest: dict[str, Any],
    datamodule: GenerativeDataModule,
    root: Path,
    augmentation_seeds: list[int] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """``(report, console lines)``; writes the report files beside ``root``."""
    schema = datamodule.schema
    if len(synthetic) < 2:
        raise UserError(f"synthetic={root} holds {len(synthetic)} generated rows: too few to judge.")
    scorer = TableScorer()
    scores = scorer.score(synthetic, datamodule, "test")
    # Asked-for classes (a fill, a label plan) are the request's, not the model's.
    if manifest.get("label_source") != "model":
        scores.pop("target_tv", None)
    protocol = scorer.protocol(datamodule, "test", len(synthetic), scores, rows="exported")
    report: dict[str, Any] = {
        "synthetic": str(root.resolve()),
        "label_source": manifest.get("label_source"),
        "checkpoint": manifest.get("checkpoint"),
        "data": datamodule.describe(),
        "scores": scores,
        "score_protocol": protocol,
    }
    # The console's score table comes from the protocol (src/runtime/summary.py); these are the extras.
    lines: list[str] = []
    md = [
        f"# Utility of `{root.name}`",
        "",
        f"{len(synthetic)} generated rows, scored against the real test split.",
        "",
    ]
    md += markdown_table(scores, protocol)
    json_path, md_path = root.parent / f"{root.name}.report.json", root.parent / f"{root.name}.report.md"
    json_path.write_text(json.dumps(report, indent=2, default=float) + "\n")
    md_path.write_text("\n".join(md) + "\n")
    lines.append(f"report: {md_path}")
    if augmentation_seeds is not None:
        if schema.target is None:
            raise UserError("augmentation.enabled=true needs a target column: set data.target.")
        filled = [c for c, n in enumerate((manifest.get("fill") or {}).get("missing_per_class", [])) if n > 0]
        rows = schema.encode(synthetic)
        augmented = table_augmentation_report(
            schema,
            _raw(datamodule, "train"),
            _raw(datamodule, "test"),
            (rows, rows[:, schema.target_index].astype(int)),
            augmentation_seeds,
            filled=filled or None,
        )
        augmented["data"] = datamodule.describe()
        aug_json, aug_md = (
            root.parent / f"{root.name}.augmentation.json",
            root.parent / f"{root.name}.augmentation.md",
        )
        aug_json.write_text(json.dumps(augmented, indent=2) + "\n")
        aug_md.write_text("\n".join(table_augmentation_markdown(augmented, root.name)) + "\n")
        report["augmentation"] = augmented
        lines += [*_augmentation_headline(augmented), f"augmentation report: {aug_md}"]
    return report, lines


def _raw(datamodule: GenerativeDataModule, split: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = datamodule.split(split)
    return x.cpu().numpy(), y.cpu().numpy()


def _augmentation_headline(report: dict[str, Any]) -> list[str]:
    rare = report["protocol"]["rare_classes"]
    out = [
        f"augmentation (rare classes: {', '.join(rare) or 'none'}; mean over seeds {report['protocol']['seeds']}):"
    ]
    for arm, scores in report["arms"].items():
        parts = [
            f"{name} {scores[name]['mean']:.3f}"
            for name in ("accuracy", "macro_f1", "rare_recall")
            if name in scores
        ]
        out.append(f"  {arm:<20} " + ", ".join(parts))
    return out


def flat_table_report(report: dict[str, Any]) -> dict[str, float]:
    """``metrics.json`` numbers: ``scores/<name>`` and ``augmentation/<arm>/<score>`` (+ ``_std``)."""
    metrics = {f"scores/{name}": value for name, value in report["scores"].items()}
    for arm, scores in (report.get("augmentation") or {}).get("arms", {}).items():
        for name, value in scores.items():
            metrics[f"augmentation/{arm}/{name}"] = value["mean"]
            metrics[f"augmentation/{arm}/{name}_std"] = value["std"]
    return {k: v for k, v in metrics.items() if v is not None}
