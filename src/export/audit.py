"""Membership-inference audit reports of exported datasets, written beside the dataset.

``<dir>.audit.json`` and ``<dir>.audit.md`` are siblings of the export directory (like the utility
report), so the dataset's checksums stay valid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from src.metrics.membership import FPR_LEVELS


def audit_table(scores: dict[str, float], protocol: dict[str, Any]) -> list[str]:
    """Markdown rows of an audit: one row per attack (shared by the report and the dataset card)."""
    lines = [
        f"Members: {protocol['n_members']} {protocol['members']} images; non-members: {protocol['n_nonmembers']} "
        f"{protocol['nonmembers']} images (seed {protocol['seed']}). AUC 0.5 = the attack cannot tell them apart.",
        "",
        "| attack | ROC AUC | " + " | ".join(f"TPR at FPR {v:g}" for v in FPR_LEVELS.values()) + " |",
        "|---|---|" + "---|" * len(FPR_LEVELS),
    ]
    for attack, description in protocol["attacks"].items():
        values = [scores[f"audit/{attack}/auc"]] + [
            scores[f"audit/{attack}/tpr_at_fpr_{k}"] for k in FPR_LEVELS
        ]
        lines.append(f"| {attack} ({description}) | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return lines


def write_audit_report(root: Path, scores: dict[str, float], protocol: dict[str, Any]) -> tuple[Path, Path]:
    root = Path(root)
    json_path = root.parent / f"{root.name}.audit.json"
    md_path = root.parent / f"{root.name}.audit.md"
    json_path.write_text(
        json.dumps({"dataset": str(root.resolve()), "scores": scores, "protocol": protocol}, indent=2) + "\n"
    )
    md_path.write_text(
        "\n".join([f"# Membership-inference audit of `{root.name}`", "", *audit_table(scores, protocol)])
        + "\n"
    )
    return json_path, md_path
