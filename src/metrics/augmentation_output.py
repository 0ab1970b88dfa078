"""The augmentation report's scores and outputs: per-run scores, the per-arm summary over seeds,
the markdown (protocol first, so a reader can reproduce it), the plot and the flat metrics."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_f1_score,
    multiclass_recall,
)

SCORES = ("accuracy", "balanced_accuracy", "macro_f1", "scarce_recall")


def arm_scores(predicted: Tensor, target: Tensor, num_classes: int, scarce: Sequence[int]) -> dict[str, Any]:
    """Accuracy, balanced accuracy (mean recall), macro F1, per-class recall and the rare classes' mean recall."""
    recall = multiclass_recall(predicted, target, num_classes=num_classes, average=None)
    return {
        "accuracy": float(multiclass_accuracy(predicted, target, num_classes=num_classes, average="micro")),
        "balanced_accuracy": float(
            multiclass_recall(predicted, target, num_classes=num_classes, average="macro")
        ),
        "macro_f1": float(multiclass_f1_score(predicted, target, num_classes=num_classes, average="macro")),
        "per_class_recall": [float(r) for r in recall],
        "scarce_recall": float(recall[list(scarce)].mean()) if scarce else None,
    }


def spread(values: Sequence[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": list(values),
    }


def summarize(arm: Any, runs: list[dict[str, Any]], num_classes: int) -> dict[str, Any]:
    """An arm's report cell (keys: :mod:`src.metrics.augmentation`) from its runs, one per seed."""
    schedule = runs[0]["schedule"]
    cell: dict[str, Any] = {
        "n_train": arm.n_train,
        "n_real": arm.n_real,
        "n_synthetic": arm.n_synthetic,
        "ratio": arm.ratio if math.isfinite(arm.ratio) else None,
        "classic": arm.classic,
        "steps": schedule["steps"],
        "batch": sum(schedule["counts"]),
        "real_per_batch": schedule["real_per_batch"],
        "real_passes": schedule["real_passes"],
    }
    for score in SCORES:
        if runs[0][score] is not None:
            cell[score] = spread([r[score] for r in runs])
    cell["per_class_recall"] = {
        "mean": [statistics.fmean(r["per_class_recall"][c] for r in runs) for c in range(num_classes)],
        "std": [
            statistics.stdev([r["per_class_recall"][c] for r in runs]) if len(runs) > 1 else 0.0
            for c in range(num_classes)
        ],
    }
    cell["chosen_epoch"] = spread([r["chosen_epoch"] for r in runs])
    cell["chosen_step"] = spread([r["best_step"] for r in runs])
    cell["stopped_early"] = sum(bool(r["stopped_early"]) for r in runs)
    cell.update(arm.info)
    return cell


def _pm(value: dict[str, Any] | None, digits: int = 4) -> str:
    return "" if not value else f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"


def protocol_lines(report: dict[str, Any]) -> list[str]:
    """The protocol as markdown bullets, with the options that reproduce it."""
    protocol, budget = report["protocol"], report["protocol"]["budget"]
    classifier, recipe = report["classifier"], report["classifier"]["recipe"]
    batch, per_batch = protocol["batch"], protocol["real_per_batch"]
    labels = report["labels"]
    teacher = protocol["teacher"]
    options = [
        f"classifier.arch={classifier['arch']}",
        f"classifier.epochs={recipe['epochs']}",
        f"augmentation.seeds=[{','.join(map(str, report['seeds']))}]",
        f"augmentation.ratios=[{','.join(f'{r:g}' for r in report['ratios'])}]",
        f"augmentation.classic={str('real+classic' in report['arms']).lower()}",
        f"augmentation.real_share={protocol['real_share']:g}",
        f"augmentation.synthetic_labels={protocol['synthetic_labels']}",
        f"augmentation.min_confidence={protocol['min_confidence']:g}",
        f"augmentation.synthetic_weight={protocol['synthetic_weight']:g}",
        f"augmentation.patience={'null' if budget['patience'] is None else budget['patience']}",
        f"augmentation.min_steps={budget['min_steps']}",
    ]
    return [
        "## Protocol",
        "",
        f"- Classifier: the domain classifier (`{classifier['arch']}`), AdamW (lr {recipe['lr']:g}, weight decay "
        f"{recipe['weight_decay']:g}) with a one-cycle schedule over each arm's steps, random shifts of up to "
        f"{recipe['max_shift']} px (per 28 px), batch {batch}; seeds {report['seeds']} (mean ± std over seeds).",
        f"- Batches: arms with synthetic images draw {per_batch} real + {batch - per_batch} synthetic images per "
        f"batch (real_share {protocol['real_share']:g}), each pool in its own random order; real-only arms "
        "(real, classic, baselines) draw the whole batch from one pool.",
        f"- Budget: real only trains {recipe['epochs']} epochs over the {report['n_real']} real images, at least "
        f"{budget['min_steps']} steps: {budget['real_only_steps']} steps, {budget['real_only_passes']:.1f} passes. "
        f"Every other arm: {budget['rule']} (steps per arm in the table); the synthetic-only arm trains "
        f"{budget['real_only_steps']} steps.",
        f"- Selection: the val split ({report['n_val']} real images) is scored every {budget['check_every']} steps "
        "and the best check's weights are kept (chosen epoch: passes over the arm's real pool at that check); "
        + (
            f"training stops after {budget['patience']} checks without a better score."
            if budget["patience"]
            else "no early stop (the whole budget runs)."
        )
        + f" The test split ({report['n_test']} images) is only scored.",
        f"- Synthetic labels: `{protocol['synthetic_labels']}`. Teacher: {teacher['source']}, seed {teacher['seed']}, "
        f"val accuracy {teacher['val_accuracy']:.4f}. min_confidence {protocol['min_confidence']:g} (teacher "
        f"probability of the label used): {labels['kept_share']:.1%} of the {report['n_synthetic']} synthetic "
        f"images kept. Synthetic loss weight: {protocol['synthetic_weight']:g}. The `synthetic` arm (CAS) "
        "uses every synthetic image with the export's label.",
        f"- Rare classes (*, fewer than half the largest class's images): {report['scarce_classes'] or 'none'}; "
        f"real training images per class: {report['real_class_counts']}.",
        "- Baselines: `real+oversample` (rare-class real images repeated up to the largest class), "
        "`real+class_weights` (loss weighted by n / (K n_c)), `real+smote` (imbalanced-learn SMOTE on "
        "flattened pixels), each trained on its one pool under the budget rule.",
        "- Options: `" + " ".join(options) + "`",
        "",
    ]


def report_markdown(report: dict[str, Any], title: str) -> str:
    """The protocol, one row per arm (mean ± std over seeds; rare classes marked *) and the labels' table."""
    names = report["class_names"] or [str(c) for c in range(len(report["real_class_counts"]))]
    scarce = set(report["scarce_classes"])
    header = ["arm", "train images (real + synthetic)", "steps", "chosen epoch", "accuracy", "macro F1"]
    header += ["rare-class recall", "balanced acc.", "NAS"]
    header += [f"{names[c]}{'*' if c in scarce else ''}" for c in range(len(names))]
    lines = [f"# {title}", "", *protocol_lines(report), "## Arms", ""]
    lines += [
        "Tested on the real test split. NAS: Naive Augmentation Score, accuracy minus real-only accuracy. "
        "Columns per class: recall.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, cell in report["arms"].items():
        row = [
            name + (f" ({cell['with']})" if "with" in cell else ""),
            f"{cell['n_train']} ({cell['n_real']} + {cell['n_synthetic']})",
            str(cell["steps"]),
            _pm(cell["chosen_epoch"], 1),
            _pm(cell["accuracy"]),
            _pm(cell["macro_f1"]),
            _pm(cell.get("scarce_recall")),
            _pm(cell["balanced_accuracy"]),
            f"{cell['nas']:+.4f}" if "nas" in cell else "",
        ]
        recall = cell["per_class_recall"]
        row += [f"{m:.3f} ± {s:.3f}" for m, s in zip(recall["mean"], recall["std"])]
        lines.append("| " + " | ".join(row) + " |")
    shorts = {name: cell["fill_short"] for name, cell in report["arms"].items() if cell.get("fill_short")}
    for name, short in shorts.items():
        lines += [
            "",
            f"{name}: the kept synthetic pool lacked {short} images (class: count) to fill to the largest.",
        ]
    lines += [
        "",
        "## Synthetic labels per class",
        "",
        "| class | synthetic images | teacher agrees | kept | kept share |",
    ]
    lines.append("|---|---|---|---|---|")
    for row in report["labels"]["per_class"]:
        agreement = "" if row["agreement"] is None else f"{row['agreement']:.3f}"
        kept_share = "" if row["kept_share"] is None else f"{row['kept_share']:.3f}"
        lines.append(f"| {names[row['class']]} | {row['n']} | {agreement} | {row['kept']} | {kept_share} |")
    if report["skipped"]:
        lines += ["", "Not run: " + "; ".join(f"{k} ({v})" for k, v in report["skipped"].items()) + "."]
    return "\n".join(lines) + "\n"


def plot_report(report: dict[str, Any], path: str) -> None:
    """Accuracy and rare-class recall (balanced accuracy without rare classes) per arm, mean ± std (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = report["arms"]
    second = "scarce_recall" if report["scarce_classes"] else "balanced_accuracy"
    names = list(arms)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.42 * len(names) + 1.6), sharey=True)
    for ax, key, label in zip(
        axes,
        ("accuracy", second),
        ("accuracy", "rare-class recall" if second == "scarce_recall" else "balanced accuracy"),
    ):
        means = [arms[n][key]["mean"] for n in names]
        stds = [arms[n][key]["std"] for n in names]
        for group, colour in GROUPS.items():
            rows = [i for i, n in enumerate(names) if _group(n) == group]
            if rows:
                ax.errorbar(
                    [means[i] for i in rows], rows, xerr=[stds[i] for i in rows], fmt="o", color=colour,
                    capsize=3, label=group,
                )  # fmt: skip
        ax.axvline(arms["real"][key]["mean"], color="black", linestyle=":", label="real only")
        low = min(m - s for m, s in zip(means, stds))
        ax.set_xlim(max(0.0, low - 0.05), min(1.02, max(m + s for m, s in zip(means, stds)) + 0.02))
        ax.set_xlabel(f"{label} (real test split)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=8, loc="best")
    protocol = report["protocol"]
    fig.suptitle(
        f"mean ± std over seeds {report['seeds']}; real_share {protocol['real_share']:g}, labels "
        f"{protocol['synthetic_labels']}, min_confidence {protocol['min_confidence']:g}, synthetic weight "
        f"{protocol['synthetic_weight']:g}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


GROUPS = {"real images only": "C7", "with synthetic images": "C0", "baselines": "C2"}


def _group(name: str) -> str:
    if name in ("real+oversample", "real+class_weights", "real+smote"):
        return "baselines"
    return "with synthetic images" if "synthetic" in name or name == "real+fill" else "real images only"


def write_augmentation_report(root: Path, report: dict[str, Any]) -> dict[str, Path]:
    """``<root>.augmentation.{json,md,png}`` beside the export (its checksums stay valid)."""
    paths = {ext: root.parent / f"{root.name}.augmentation.{ext}" for ext in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    paths["md"].write_text(report_markdown(report, f"Augmentation report of `{root.name}`"))
    plot_report(report, str(paths["png"]))
    return paths


def headline(report: dict[str, Any]) -> list[str]:
    """Console lines: the real-only arm and the best arm by accuracy and by rare-class recall."""
    arms = report["arms"]
    lines = []
    for key, label in (("accuracy", "accuracy"), ("scarce_recall", "rare-class recall")):
        if key not in arms["real"]:
            continue
        best = max((n for n in arms if key in arms[n]), key=lambda n: arms[n][key]["mean"])
        lines.append(
            f"augmentation ({label}, mean ± std over seeds {report['seeds']}): real only "
            f"{_pm(arms['real'][key], 3)}; best {best} {_pm(arms[best][key], 3)}"
        )
    return lines


def flat_augmentation(report: dict[str, Any]) -> dict[str, float]:
    """``augmentation/<arm>/<score>`` means and stds (and NAS), the teacher's val accuracy and the kept
    share of the synthetic images, for the loggers and ``metrics.json``."""
    flat: dict[str, float] = {}
    for name, cell in report["arms"].items():
        key = name.replace("+", "_").replace(" ", "_")
        for score in SCORES:
            if score in cell:
                flat[f"augmentation/{key}/{score}"] = cell[score]["mean"]
                flat[f"augmentation/{key}/{score}_std"] = cell[score]["std"]
        if "nas" in cell:
            flat[f"augmentation/{key}/nas"] = cell["nas"]
    flat["augmentation/teacher/val_accuracy"] = report["protocol"]["teacher"]["val_accuracy"]
    flat["augmentation/synthetic_kept_share"] = report["labels"]["kept_share"]
    return flat
