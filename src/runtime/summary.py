"""The short console table every command ends with: headline results, each score beside what real
held-out images get (the reference), and the verdict.

Built from the run's result alone (``metrics`` + ``protocol``), so every entry point gets it by
returning its :class:`TaskResult`: scored stages are found by their protocol's ``verdict``, and a
task's own headline lines (an audit's AUCs, an inpainting's PSNR) come in ``TaskResult.summary``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from src.metrics.verdict import summary_lines

# Where each kind of result keeps its scores: (protocol key, metric prefix, title). ``None``: the
# protocol itself (src.evaluate_dataset's scores of an exported dataset).
SCORED = (
    ("test", "test/", "test scores"),
    ("val", "val/", "val scores"),
    ("export", "export/", "export scores"),
    (None, "scores/", "dataset scores"),
)


def scored_stages(
    metrics: Mapping[str, float], protocol: Mapping[str, Any]
) -> list[tuple[str, dict[str, float], Mapping[str, Any]]]:
    """``(title, scores, protocol)`` of each scored stage with a verdict; test before val, and only
    the final stage of a training run (test when it ran)."""
    found = []
    for key, prefix, name in SCORED:
        part = protocol if key is None else protocol.get(key)
        if not isinstance(part, Mapping) or "verdict" not in part:
            continue
        scores = {name[len(prefix) :]: value for name, value in metrics.items() if name.startswith(prefix)}
        if not scores:
            continue
        reference = part.get("reference") or {}
        unit = part.get("unit", "images")  # table scores record "rows"
        against = (
            f"real vs real: {reference.get('n')} held-out {reference.get('split')} {unit}"
            if reference.get("n")
            else f"no reference ({reference.get('reason', 'none')})"
        )
        title = (
            f"{name}: {part.get('n_fake')} samples vs {part.get('n_real')} real "
            f"{part.get('split')} {unit} ({against})"
        )
        found.append((title, scores, part))
        if key == "test":
            break  # a training run's final word; its validation scores are in metrics.json
    return found


def console_summary(metrics: Mapping[str, float], protocol: Mapping[str, Any], own: list[str]) -> list[str]:
    """The lines printed at the end of a command (empty when there is nothing to show)."""
    lines = list(own)
    for title, scores, part in scored_stages(metrics, protocol):
        lines += summary_lines(scores, dict(part), title)
    return lines
