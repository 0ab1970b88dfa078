"""Is this sample set plainly bad? Per-sample checks and a verdict judged against real data.

A score means something only beside what real data get under the same protocol. Every image
evaluation therefore also scores a *reference*: as many held-out real images (never in the
training split) against the same real split, with the same extractor. Each verdict check compares
the generated set's number with the reference's number and fails when it is worse by more than a
stated margin (``RULES``). Four aspects, each pass/fail with its deciding numbers:

* **fidelity**: a classifier tells the samples from real ones almost always (``detection_auc``);
  samples fall outside the real data, where the domain classifier's confidence means nothing
  (``outside_share``: share of samples farther from every real image than 99 % of real images are
  from their nearest other real image); samples are blurred (``sharpness``: mean variance of
  the image Laplacian, the classic focus measure, relative to the reference's);
* **diversity**: recall, coverage or the Inception Score far below the reference's (collapse);
* **novelty**: near-copies of training images (``copy_share``: closer to a training image than
  ``COPY_RATIO`` of that image's distance to its own nearest training neighbour);
* **class balance**: the domain classifier's class histogram of the samples far from the real
  split's labels (``class_tv``, total variation distance).

The thresholds are the README's ("Metrics", "Verdict"); tests run them on constructed sets (noise,
one image repeated, training copies, blurred images) and on real held-out images, which must pass.

Tables (:data:`TABLE_RULES`, scores of :mod:`src.metrics.tabular`) have the same four aspects:
fidelity (``quality`` far below the reference's, ``detection_auc`` far above), diversity
(``distinct_share``, ``category_coverage``), novelty (``exact_copy_share``, ``dcr`` far below the
reference's, ``dcr_closer_share``) and class balance (``target_tv``); tests/test_table_scores.py runs
them on uniform noise rows, one row repeated, copied training rows and real held-out rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from src.metrics.memorization import TrainReference, nearest

# A sample is outside the real data when it is farther from every real image than this quantile of
# the real images' own nearest-neighbour distances (the 99 % quantile: about 1 % of real images are
# outside by construction; tests/test_verdict.py holds uniform noise to failing on it).
OUTSIDE_QUANTILE = 0.99
# A near-copy: closer to its nearest training image than this share of that image's nearest-neighbour distance.
COPY_RATIO = 1 / 3
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class Rule:
    """``score`` fails when it is worse than the reference by more than ``margin``.

    ``kind``: ``above`` (fails above ``reference + margin``), ``below`` (fails below ``reference -
    margin``), ``ratio_below`` (fails below ``margin x reference``), ``excess_below`` (fails when
    ``value - 1`` is below ``margin x (reference - 1)``, for the Inception Score, whose floor is 1).
    """

    aspect: str
    score: str
    kind: str
    margin: float
    meaning: str

    def limit(self, reference: float) -> float:
        if self.kind == "above":
            return reference + self.margin
        if self.kind == "below":
            return reference - self.margin
        if self.kind == "ratio_below":
            return self.margin * reference
        return 1.0 + self.margin * (reference - 1.0)

    def fails(self, value: float, reference: float) -> bool:
        limit = self.limit(reference)
        return value > limit if self.kind == "above" else value < limit

    def text(self) -> str:
        if self.kind == "above":
            return f"fails above real + {self.margin:g}"
        if self.kind == "below":
            return f"fails below real - {self.margin:g}"
        if self.kind == "ratio_below":
            return f"fails below {self.margin:g} x real"
        return f"fails below 1 + {self.margin:g} x (real - 1)"


RULES: tuple[Rule, ...] = (
    Rule(
        "fidelity",
        "detection_auc",
        "above",
        0.4,
        "a classifier tells the samples from real images almost always",
    ),
    Rule("fidelity", "outside_share", "above", 0.25, "many samples lie outside the real data"),
    Rule("fidelity", "sharpness", "ratio_below", 0.5, "the samples are blurred"),
    Rule("diversity", "recall", "ratio_below", 0.5, "the samples cover few of the real images (collapse)"),
    Rule("diversity", "coverage", "ratio_below", 0.5, "the samples cover few of the real images (collapse)"),
    Rule("diversity", "is", "excess_below", 0.5, "the samples spread over few classes (collapse)"),
    Rule("novelty", "copy_share", "above", 0.1, "many samples are near-copies of training images"),
    Rule("class_balance", "class_tv", "above", 0.2, "the class histogram is far from the real one"),
)
# Tables (src/metrics/tabular.py): the same four aspects on the table scores. The margins were set on
# constructed sets (uniform noise rows, one row repeated, training rows copied, one class) scored on
# breast cancer, DoctorAUS and the mixed stand-in table of tests/test_table_scores.py (the test runs
# them on the stand-in). On the three, uniform noise scored 0.24 to 0.51 below the real-vs-real
# quality and 0.42 to 0.53 above its detection AUC. ``dcr_closer_share`` compares equal-size
# training and held-out sets: with a held-out split much smaller than the training split it barely
# sees copies (their source row is seldom among the sampled training rows); ``dcr`` and
# ``exact_copy_share`` do.
TABLE_RULES: tuple[Rule, ...] = (
    Rule(
        "fidelity",
        "quality",
        "below",
        0.15,
        "the rows' column shapes and pair trends are far from the real ones",
    ),
    Rule(
        "fidelity", "detection_auc", "above", 0.3, "a classifier tells the rows from real rows almost always"
    ),
    Rule("diversity", "distinct_share", "ratio_below", 0.5, "many rows repeat (collapse)"),
    Rule(
        "diversity",
        "category_coverage",
        "ratio_below",
        0.7,
        "the rows use few of the real categories (collapse)",
    ),
    Rule("novelty", "exact_copy_share", "above", 0.1, "many rows are exact copies of training rows"),
    Rule(
        "novelty",
        "dcr",
        "ratio_below",
        0.5,
        "the rows lie much closer to training rows than real unseen rows do",
    ),
    Rule(
        "novelty",
        "dcr_closer_share",
        "above",
        0.2,
        "most rows lie closer to a training row than to any held-out row (memorisation)",
    ),
    Rule(
        "class_balance",
        "target_tv",
        "above",
        0.2,
        "the target's class frequencies are far from the real ones",
    ),
)
ASPECTS = ("fidelity", "diversity", "novelty", "class_balance")
# The scores a console summary shows beside their reference, in this order.
HEADLINE = (
    "fid",
    "kid",
    "precision",
    "recall",
    "coverage",
    "detection_auc",
    "outside_share",
    "sharpness",
    "copy_share",
    "class_tv",
    "is",
    # tables
    "quality",
    "column_shapes",
    "column_pair_trends",
    "distinct_share",
    "category_coverage",
    "dcr",
    "dcr_closer_share",
    "exact_copy_share",
    "target_tv",
    "tstr_accuracy",
    "trtr_accuracy",
    "tstr_roc_auc",
    "trtr_roc_auc",
)


# ---------------------------------------------------------------------------- per-sample statistics
def outside_threshold(real_radii: Tensor, quantile: float = OUTSIDE_QUANTILE) -> float:
    """The distance beyond which a sample is outside the real data: a quantile of the real
    nearest-neighbour distances."""
    return float(torch.quantile(real_radii.double(), quantile))


def outside_share(fake: Tensor, real: Tensor, threshold: float) -> float:
    """Share of samples whose nearest real feature is farther than ``threshold``."""
    distance, _ = nearest(fake, real)
    return float((distance > threshold).double().mean())


def copy_share(fake: Tensor, train: TrainReference, ratio: float = COPY_RATIO) -> float:
    """Share of samples closer to their nearest training image than ``ratio`` x that image's own
    nearest-neighbour distance (exact copies are at distance 0)."""
    distance, index = nearest(fake, train.features)
    return float((distance < ratio * train.nn_radius[index]).double().mean())


def class_tv(predicted: Tensor, labels: Tensor, num_classes: int) -> float:
    """Total variation distance between the predicted class histogram and the labels' histogram."""
    p = torch.bincount(predicted.long().cpu(), minlength=num_classes)[:num_classes].double()
    q = torch.bincount(labels.long().cpu(), minlength=num_classes)[:num_classes].double()
    return float(0.5 * (p / p.sum().clamp_min(1) - q / q.sum().clamp_min(1)).abs().sum())


def sharpness(images: Tensor) -> float:
    """Mean over images of the variance of the Laplacian of the grey image in ``[0, 1]`` (focus measure)."""
    grey = images.float().div(255.0 if images.dtype == torch.uint8 else 1.0).mean(dim=1, keepdim=True)
    kernel = LAPLACIAN.to(grey.device).view(1, 1, 3, 3)
    values = []
    for part in grey.split(1000):
        values.append(F.conv2d(part, kernel).flatten(1).var(dim=1))
    return float(torch.cat(values).double().mean())


# ---------------------------------------------------------------------------- the verdict
@dataclass(frozen=True)
class Check:
    aspect: str
    score: str
    value: float
    reference: float
    limit: float
    passed: bool
    rule: str
    meaning: str


def judge(
    scores: dict[str, float], reference: dict[str, float], rules: tuple[Rule, ...] = RULES
) -> dict[str, Any]:
    """The verdict of ``scores`` against the real-vs-real ``reference``: per aspect ``pass`` (True,
    False, or None when none of its scores could be judged) and its checks. ``rules``: the image
    rules, or :data:`TABLE_RULES`."""
    verdict: dict[str, Any] = {}
    for aspect in ASPECTS:
        checks = []
        for rule in (r for r in rules if r.aspect == aspect):
            value, ref = scores.get(rule.score), reference.get(rule.score)
            if value is None or ref is None or not (math.isfinite(value) and math.isfinite(ref)):
                continue
            if (rule.kind == "ratio_below" and ref <= 0) or (rule.kind == "excess_below" and ref <= 1.05):
                continue  # no room below the reference to judge (e.g. a reference IS of 1)
            limit = rule.limit(ref)
            checks.append(
                Check(
                    aspect,
                    rule.score,
                    value,
                    ref,
                    limit,
                    not rule.fails(value, ref),
                    rule.text(),
                    rule.meaning,
                )
            )
        verdict[aspect] = {
            "pass": all(c.passed for c in checks) if checks else None,
            "checks": [asdict(c) for c in checks],
        }
    return verdict


def verdict_warnings(verdict: dict[str, Any], unit: str = "images") -> list[str]:
    """One warning per failed check, with its deciding number and its reference (``unit``: what
    the real held-out items are, ``images`` or ``rows``)."""
    found = []
    for aspect, entry in verdict.items():
        for check in entry["checks"]:
            if check["passed"]:
                continue
            found.append(
                f"{aspect.replace('_', ' ')} fails: {check['score']} {check['value']:.3g} against "
                f"{check['reference']:.3g} for real held-out {unit} ({check['rule']}, limit "
                f"{check['limit']:.3g}): {check['meaning']}."
            )
    return found


def summary_lines(scores: dict[str, float], protocol: dict[str, Any], title: str = "") -> list[str]:
    """A short console table: headline scores beside real-vs-real, then the verdict per aspect."""
    reference = {
        key[len("reference/real/") :]: value
        for key, value in protocol.items()
        if key.startswith("reference/real/") and isinstance(value, int | float)
    }
    rows = [(name, scores[name], reference.get(name)) for name in HEADLINE if name in scores]
    if not rows:
        return []
    width = max(len(name) for name, _, _ in rows)
    lines = [title] if title else []
    lines.append(f"  {'score':<{width}}  {'samples':>9}  {'real vs real':>12}")
    for name, value, ref in rows:
        ref_text = "-" if ref is None else f"{ref:.4g}"
        lines.append(f"  {name:<{width}}  {value:>9.4g}  {ref_text:>12}")
    verdict = protocol.get("verdict") or {}
    parts = []
    for aspect in ASPECTS:
        entry = verdict.get(aspect)
        if not entry or entry["pass"] is None:
            parts.append(f"{aspect.replace('_', ' ')} n/a")
            continue
        failed = [c["score"] for c in entry["checks"] if not c["passed"]]
        parts.append(
            f"{aspect.replace('_', ' ')} {'pass' if entry['pass'] else 'FAIL (' + ', '.join(failed) + ')'}"
        )
    if verdict:
        lines.append("  verdict: " + "; ".join(parts))
    return lines


def markdown_table(scores: dict[str, Any], protocol: dict[str, Any]) -> list[str]:
    """Markdown: every score beside what real held-out images get (the reference), then the verdict."""
    reference = protocol.get("reference") or {}
    against = (
        f"{reference['n']} held-out {reference['split']} {protocol.get('unit', 'images')}"
        if reference.get("n")
        else f"no reference: {reference.get('reason', 'none')}"
    )
    lines = [
        f"| score (vs real {protocol.get('split')} split) | samples | real vs real ({against}) |",
        "|---|---|---|",
    ]
    for name, value in scores.items():
        ref = protocol.get(f"reference/real/{name}")
        lines.append(f"| {name} | {_fmt(value)} | {_fmt(ref)} |")
    verdict = protocol.get("verdict") or {}
    if verdict:
        lines += [
            "",
            "| verdict | result | deciding numbers (samples / real vs real / limit) |",
            "|---|---|---|",
        ]
        for aspect, entry in verdict.items():
            result = {True: "pass", False: "**fail**", None: "n/a"}[entry["pass"]]
            numbers = "; ".join(
                f"{c['score']} {c['value']:.3g} / {c['reference']:.3g} / {c['limit']:.3g}"
                for c in entry["checks"]
            )
            lines.append(f"| {aspect.replace('_', ' ')} | {result} | {numbers or '-'} |")
    return lines


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, int | float) else str(value)
