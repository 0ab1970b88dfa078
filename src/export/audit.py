"""Membership-inference audit reports of exported datasets, written beside the dataset.

``<dir>.audit.json`` and ``<dir>.audit.md`` are siblings of the export directory (like the utility
report), so the dataset's checksums stay valid.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from src.metrics.membership import FPR_LEVELS, json_scores


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
        lines.append(f"| {attack} ({description}) | " + " | ".join(_cell(v) for v in values) + " |")
    unmeasured = protocol.get("unmeasured") or {}
    if unmeasured:
        lines += ["", *(f"n/a: {reason}." for reason in dict.fromkeys(unmeasured.values()))]
    return lines


def _cell(value: float | None) -> str:
    # A level the non-members cannot measure: NaN in Python, null once read back from JSON.
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def privacy_lines(privacy: dict[str, Any]) -> list[str]:
    """One line on the audited model's privacy guarantee (the checkpoint's or manifest's block)."""
    if privacy.get("mechanism", "none") == "none":
        return ["Audited model: trained without differential privacy (no formal guarantee)."]
    epsilon, delta = privacy.get("epsilon"), privacy.get("delta")
    epsilon = f"{epsilon:.3f}" if isinstance(epsilon, int | float) else epsilon
    delta = f"{delta:g}" if isinstance(delta, int | float) else delta
    return [f"Audited model: {privacy.get('mechanism')}, epsilon = {epsilon}, delta = {delta}."]


def write_audit_report(
    root: Path, scores: dict[str, float], protocol: dict[str, Any], privacy: dict[str, Any]
) -> tuple[Path, Path]:
    """``<dir>.audit.json`` (scores, ``null`` where unmeasurable; protocol; the audited model's
    ``privacy`` block) and ``<dir>.audit.md`` beside the export."""
    root = Path(root)
    json_path = root.parent / f"{root.name}.audit.json"
    md_path = root.parent / f"{root.name}.audit.md"
    report = {
        "dataset": str(root.resolve()),
        "scores": json_scores(scores),
        "protocol": protocol,
        "privacy": privacy,
    }
    json_path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    md_path.write_text(
        "\n".join(
            [
                f"# Membership-inference audit of `{root.name}`",
                "",
                *privacy_lines(privacy),
                "",
                *audit_table(scores, protocol),
            ]
        )
        + "\n"
    )
    return json_path, md_path
