"""The per-class quality gate of conditional generation: does a real-data classifier see the class asked for?

Every conditional export and every fill asks the model for images of given classes. The domain
classifier (trained on the real training split; :mod:`src.metrics.domain`) labels each generated
image, and per class:

* ``agreement``: the share of the class's generated images it labels as that class;
* ``real_recall``: the same classifier's recall on the class's real images of the test split, the
  ceiling to read the agreement against (a class the classifier misses on real images cannot
  agree well on generated ones either, whatever the model);
* the counts (generated, agreed; with ``gate=filter`` also drawn, kept and the acceptance rate).

A class whose agreement is under ``min_agreement`` (default 0.5) is named in a WARNING, in the
manifest's ``gate`` block and in ``metrics.json["warnings"]``. What it then gets is the mode:

* ``warn`` (default): every image is kept;
* ``filter``: only the images the classifier labels as their class are kept, and more are drawn
  for the class until it has its count or ``max_draws`` draws per requested image were made (a
  class still short is named too);
* ``refuse``: the export stops with one ``Error:`` line naming the classes under the threshold,
  before the export directory exists (the writer's temporary directory is removed).

Samples of an unconditional model are labelled by this classifier itself, so the gate judges only
conditional generation (a fill by rejection reports agreement 1 by construction).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from src.utils.errors import UserError
from src.utils.logging import get_logger

log = get_logger(__name__)

GateMode = Literal["warn", "filter", "refuse"]
# A cVAE filling 20-image classes drew blobs the classifier took for other digits (agreement near
# 0); a fair model of a class the classifier knows lands well above one half. Half separates the two
# without flagging a class merely because the classifier itself is unsure of it (see real_recall).
DEFAULT_MIN_AGREEMENT = 0.5
# (uint8 images (B, C, H, W)) -> class probabilities (B, K).
Probabilities = Callable[[Tensor], Tensor]
# (labels (B,)) -> uint8 images (B, C, H, W) of those classes: the model's conditional sampler.
Sampler = Callable[[Tensor], Tensor]


@dataclass
class GateClassifier:
    """The classifier that judges generated images, and the real split its recall is measured on."""

    probabilities: Probabilities
    real: tuple[Tensor, Tensor] | None = None
    real_split: str = "test"
    description: dict[str, Any] = field(default_factory=dict)
    # How messages and cards name the judge and what it judges (tables: a classifier of the rows).
    name: str = "the domain classifier"
    unit: str = "images"


def missing_classifier(mode: str) -> None:
    """``gate=filter|refuse`` without a classifier: an ``Error:`` before any work (``warn`` records the gap)."""
    if mode != "warn":
        raise UserError(
            f"gate={mode} judges generated images with the domain classifier, and this checkpoint's run has "
            "none with class logits: train with metrics=domain (the default), or use gate=warn."
        )


class ClassGate:
    """Counts, per class, the generated images the classifier labels as their requested class.

    Args:
        classifier: the judge.
        class_names: names of the label values.
        requested: images wanted per class (a fill's missing counts, an export's label plan).
        mode: ``warn`` | ``filter`` | ``refuse``.
        min_agreement: a class with a lower agreement fails.
    """

    def __init__(
        self,
        classifier: GateClassifier,
        class_names: Sequence[str],
        requested: Sequence[int],
        mode: GateMode,
        min_agreement: float,
    ) -> None:
        self.classifier = classifier
        self.class_names = [str(name) for name in class_names]
        self.requested = np.asarray(list(requested), dtype=np.int64)
        self.mode = mode
        self.min_agreement = float(min_agreement)
        k = len(self.class_names)
        self.drawn = np.zeros(k, dtype=np.int64)
        self.agreed = np.zeros(k, dtype=np.int64)
        self.kept = np.zeros(k, dtype=np.int64)

    def judge(self, images: Tensor, labels: Tensor) -> Tensor:
        """True where the classifier labels an image as its requested class; updates the counts."""
        labels = labels.cpu().long()
        predicted = self.classifier.probabilities(images).argmax(1).cpu()
        agree = predicted == labels
        k = len(self.class_names)
        self.drawn += np.bincount(labels.numpy(), minlength=k)
        self.agreed += np.bincount(labels[agree].numpy(), minlength=k)
        return agree

    def keep(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The images to write: all of them, or with ``filter`` those accepted, up to each class's count."""
        agree = self.judge(images, labels)
        labels = labels.cpu().long()
        if self.mode == "filter":
            take = torch.zeros_like(agree)
            for c in labels.unique().tolist():
                room = int(self.requested[c] - self.kept[c])
                rows = torch.nonzero(agree & (labels == c)).flatten()[: max(0, room)]
                take[rows] = True
            images, labels = images[take.to(images.device)], labels[take]
        self.kept += np.bincount(labels.numpy(), minlength=len(self.class_names))
        return images, labels

    def top_up(self, sample: Sampler, batch_size: int, max_draws: int) -> Iterator[tuple[Tensor, Tensor]]:
        """``filter``: more draws for the classes still short, at most ``max_draws`` per requested image."""
        if self.mode != "filter":
            return
        limit = max_draws * self.requested
        while True:
            need = self.requested - self.kept
            wants = []
            for c in np.flatnonzero((need > 0) & (self.drawn < limit)):
                # As many as the class's acceptance so far says it takes (at least its shortfall).
                rate = self.agreed[c] / self.drawn[c] if self.drawn[c] else 1.0
                want = math.ceil(need[c] / max(rate, 1.0 / max_draws))
                wants.append((int(c), int(min(want, limit[c] - self.drawn[c]))))
            if not wants:
                return
            labels = torch.cat([torch.full((count,), c, dtype=torch.long) for c, count in wants])
            for start in range(0, len(labels), batch_size):
                batch = labels[start : start + batch_size]
                yield self.keep(sample(batch), batch)

    def report(self) -> dict[str, Any]:
        """The manifest's ``gate`` block: the per-class table, the mode, the failed classes, the warnings."""
        recall, real_counts = self._real_recall()
        unit = self.classifier.unit
        classes, failed, warnings = [], [], []
        for c, name in enumerate(self.class_names):
            if not self.requested[c] and not self.drawn[c]:
                continue
            agreement = self.agreed[c] / self.drawn[c] if self.drawn[c] else None
            row: dict[str, Any] = {
                "index": c,
                "name": name,
                "requested": int(self.requested[c]),
                "generated": int(self.drawn[c]),
                "agreed": int(self.agreed[c]),
                "agreement": None if agreement is None else float(agreement),
                "n_real": real_counts[c],
                "real_recall": recall[c],
            }
            if self.mode == "filter":
                row["kept"] = int(self.kept[c])
                row["acceptance_rate"] = row["agreement"]
            classes.append(row)
            if agreement is not None and agreement < self.min_agreement:
                failed.append(name)
                real = "n/a" if recall[c] is None else f"{recall[c]:.2f}"
                warnings.append(
                    f"class {name}: the classifier labels {agreement:.0%} of its {int(self.drawn[c])} generated "
                    f"{unit} as {name} (min_agreement {self.min_agreement:g}; its recall on real "
                    f"{self.classifier.real_split} {unit} of the class: {real})"
                )
            if self.mode == "filter" and self.kept[c] < self.requested[c]:
                warnings.append(
                    f"class {name}: gate=filter kept {int(self.kept[c])} of {int(self.requested[c])} {unit} "
                    f"after {int(self.drawn[c])} draws (max_draws per requested image reached)"
                )
        agreements = [row["agreement"] for row in classes if row["agreement"] is not None]
        return {
            "mode": self.mode,
            "min_agreement": self.min_agreement,
            "real_split": self.classifier.real_split,
            "classifier": dict(self.classifier.description),
            "judge": self.classifier.name,
            "unit": self.classifier.unit,
            "classes": classes,
            "min_observed_agreement": min(agreements) if agreements else None,
            "failed": failed,
            "warnings": warnings,
        }

    def _real_recall(self) -> tuple[list[float | None], list[int | None]]:
        k = len(self.class_names)
        if self.classifier.real is None:
            return [None] * k, [None] * k
        x, y = (t.cpu() for t in self.classifier.real)
        predicted = self.classifier.probabilities(x).argmax(1).cpu()
        counts = np.bincount(y.numpy(), minlength=k)[:k]
        hits = np.bincount(y[predicted == y].numpy(), minlength=k)[:k]
        recall = [float(h / n) if n else None for h, n in zip(hits, counts)]
        return recall, [int(n) for n in counts]


def finish_gate(gate: ClassGate) -> dict[str, Any]:
    """The report, its warnings logged; with ``refuse`` an ``Error:`` naming the failed classes."""
    report = gate.report()
    for warning in report["warnings"]:
        log.warning(f"gate: {warning}")
    if gate.mode == "refuse" and report["failed"]:
        rows = {row["name"]: row for row in report["classes"]}
        named = ", ".join(f"{name} ({rows[name]['agreement']:.0%})" for name in report["failed"])
        raise UserError(
            f"gate=refuse: {gate.classifier.name} labels fewer than {gate.min_agreement:.0%} of the generated "
            f"{gate.classifier.unit} of class(es) {named} as the class asked for; nothing was exported. Train the "
            f"model longer, use gate=filter (keep only the {gate.classifier.unit} it accepts) or gate=warn, or lower "
            "min_agreement."
        )
    return report


def skipped_gate(mode: str, min_agreement: float, reason: str) -> dict[str, Any]:
    """The ``gate`` block of an export the gate could not judge (``warn`` only; see :func:`missing_classifier`)."""
    log.info(f"gate: not run ({reason})")
    return {"mode": mode, "min_agreement": min_agreement, "skipped": reason, "classes": [], "failed": []}


def gate_lines(report: dict[str, Any]) -> list[str]:
    """Console lines: the per-class table and the classes under the threshold."""
    if report.get("skipped"):
        return [f"  per-class gate not run: {report['skipped']}"]
    filtered = report["mode"] == "filter"
    lines = [
        f"per-class gate (gate={report['mode']}, min_agreement {report['min_agreement']:g}; "
        f"real recall on the {report['real_split']} split):",
        f"  {'class':<14}{'generated':>10}{'agreement':>11}{'real recall':>13}"
        + (f"{'kept':>8}" if filtered else ""),
    ]
    for row in report["classes"]:
        mark = " *" if row["name"] in report["failed"] else ""
        agreement = "-" if row["agreement"] is None else f"{row['agreement']:.3f}"
        recall = "-" if row["real_recall"] is None else f"{row['real_recall']:.3f}"
        name = f"{row['name'][:12]}{mark}"
        kept = f"{row['kept']:>8}" if filtered else ""
        lines.append(f"  {name:<14}{row['generated']:>10}{agreement:>11}{recall:>13}{kept}")
    if report["failed"]:
        lines.append(f"  * under min_agreement: {', '.join(report['failed'])}")
    return lines


def gate_card_lines(report: dict[str, Any] | None) -> list[str]:
    """The dataset card's section: a markdown table of the per-class agreement."""
    if not report:
        return [
            "Not judged: no label here was asked of a conditional model (an unconditional model's samples carry "
            "the domain classifier's own labels; inpainted images keep their real ones)."
        ]
    if report.get("skipped"):
        return [f"Not judged: {report['skipped']}."]
    filtered = report["mode"] == "filter"
    head = (
        "| class | generated | agreed | agreement | real recall |"
        + (" kept |" if filtered else "")
        + " status |"
    )
    judge, unit = report.get("judge", "the domain classifier"), report.get("unit", "images")
    lines = [
        f"{judge[0].upper()}{judge[1:]} (trained on the real training split) labelled each generated "
        f"{unit[:-1]}; agreement is the share it labels as the class asked for, real recall its recall on "
        f"the real `{report['real_split']}` {unit} of the class. Gate `{report['mode']}`, min_agreement "
        f"{report['min_agreement']:g}.",
        "",
        head,
        "|---|---:|---:|---:|---:|" + ("---:|" if filtered else "") + "---|",
    ]
    for row in report["classes"]:
        agreement = "-" if row["agreement"] is None else f"{row['agreement']:.3f}"
        recall = "-" if row["real_recall"] is None else f"{row['real_recall']:.3f}"
        status = "under min_agreement" if row["name"] in report["failed"] else "ok"
        kept = f" {row['kept']} |" if filtered else ""
        lines.append(
            f"| {row['name']} | {row['generated']} | {row['agreed']} | {agreement} | {recall} |{kept} {status} |"
        )
    if report["failed"]:
        lines += ["", f"Under min_agreement: {', '.join(report['failed'])}."]
    return lines
