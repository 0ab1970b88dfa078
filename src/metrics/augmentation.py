"""Augmentation report: what synthetic images add to a (scarce or skewed) real training split.

The framework's domain classifier (network and recipe of :mod:`classifier_training`) is trained
with several seeds on each arm and tested on the real test split:

* ``real``: the real training split (after ``data.subset``);
* ``real+synthetic x{r}``: plus ``r`` times as many synthetic images (drawn from the export);
* ``real+fill``: plus, per class, the synthetic images that bring it up to the largest class
  (when the real split is skewed);
* ``synthetic``: the synthetic images only (the Classification Accuracy Score);
* ``real+classic``: real images with classic augmentation (``transforms.v2`` random affine and
  elastic deformation, parameters drawn per group of images, see ``GROUP``);
* ``real+classic+synthetic``: both (with the fill on a skewed split, else ``x1``).

Every arm trains for the same number of optimizer steps (``training_steps``). Every arm reports accuracy, balanced accuracy (mean per-class recall) and per-class recall, as
mean and standard deviation over seeds; classes with fewer than half the images of the largest
class are *scarce* and their mean recall is reported too. The Naive Augmentation Score (Ravuri &
Vinyals 2019) of an arm is its accuracy minus the real-only accuracy. Model selection (the epoch
kept) uses the validation split; the test split is only scored.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_recall
from torchvision.transforms import v2

from src.metrics.classifier_networks import resolve_arch
from src.metrics.classifier_training import TrainingRecipe, classifier_predictions, fit_classifier
from src.utils.errors import UserError
from src.utils.logging import get_logger

log = get_logger(__name__)

# Images per draw of the classic augmentation's parameters: an elastic displacement field costs
# ~25 ms to draw at 28 px (a Gaussian blur of a random field), so one per image would triple the
# classifier's training time; affine parameters are cheap and drawn per 8 images.
GROUP = {"affine": 8, "elastic": 32}
SCARCE_BELOW = 0.5  # a class is scarce below this fraction of the largest class's count
# Every arm trains for the same number of optimizer steps: the recipe's epochs over the real split,
# at least MIN_STEPS. With epochs instead, a larger training set would also mean more updates, and
# a 100-image split (1 batch per epoch) would get 10 updates: the comparison would measure compute.
MIN_STEPS = 200


def classic_augmentation(size: int) -> Callable[[Tensor, torch.Generator], Tensor]:
    """Random affine + elastic deformation (torchvision ``transforms.v2``) for uint8 batches.

    v2 transforms draw from the global generator; ``fit_classifier`` seeds it per run (inside
    ``fork_rng``), so runs are reproducible. Elastic strength is scaled from MNIST's 28 px.
    """
    affine = v2.RandomAffine(degrees=10, translate=(0.08, 0.08), scale=(0.9, 1.1), shear=8)
    elastic = v2.ElasticTransform(alpha=34.0 * size / 28, sigma=4.0 * size / 28)

    def augment(x: Tensor, generator: torch.Generator) -> Tensor:
        x = torch.cat([affine(part) for part in x.split(GROUP["affine"])])
        return torch.cat([elastic(part) for part in x.split(GROUP["elastic"])])

    return augment


def training_steps(n_real: int, recipe: TrainingRecipe, min_steps: int = MIN_STEPS) -> int:
    """Optimizer steps of every arm: ``recipe.epochs`` passes over the real split, at least ``min_steps``."""
    per_epoch = max(1, n_real // min(recipe.batch_size, n_real))
    return max(min_steps, recipe.epochs * per_epoch)


def scarce_classes(counts: Sequence[int]) -> list[int]:
    largest = max(counts)
    return [c for c, n in enumerate(counts) if n < SCARCE_BELOW * largest]


def _draw(x: Tensor, y: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[pick], y[pick]


def _fill_from_pool(
    pool: tuple[Tensor, Tensor], counts: Sequence[int], seed: int
) -> tuple[tuple[Tensor, Tensor] | None, str | None]:
    """Per class, the synthetic images that bring it up to the largest class (or why not)."""
    x, y = pool
    target = max(counts)
    parts_x, parts_y = [], []
    for c, have in enumerate(counts):
        need = target - have
        members = (y == c).nonzero().flatten()
        if need > len(members):
            return None, f"the export has {len(members)} synthetic images of class {c}, the fill needs {need}"
        if need:
            pick = members[
                torch.randperm(len(members), generator=torch.Generator().manual_seed(seed + c))[:need]
            ]
            parts_x.append(x[pick])
            parts_y.append(y[pick])
    if not parts_x:
        return None, "the real split is already balanced"
    return (torch.cat(parts_x), torch.cat(parts_y)), None


def plan_arms(
    real: tuple[Tensor, Tensor],
    synthetic: tuple[Tensor, Tensor],
    num_classes: int,
    ratios: Sequence[float],
    classic: bool,
    seed: int = 0,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The arms' training sets ``{name: {"x", "y", "classic", "ratio"}}`` and the skipped arms with reasons."""
    x_real, y_real = real
    x_syn, y_syn = synthetic
    counts = torch.bincount(y_real, minlength=num_classes).tolist()
    arms: dict[str, dict[str, Any]] = {"real": {"x": x_real, "y": y_real, "classic": False, "ratio": 0.0}}
    skipped: dict[str, str] = {}
    for ratio in ratios:
        name = f"real+synthetic x{ratio:g}"
        n = round(ratio * len(x_real))
        if n > len(x_syn):
            skipped[name] = f"needs {n} synthetic images, the export has {len(x_syn)}"
            continue
        xs, ys = _draw(x_syn, y_syn, n, seed)
        arms[name] = {
            "x": torch.cat([x_real, xs]),
            "y": torch.cat([y_real, ys]),
            "classic": False,
            "ratio": ratio,
        }
    fill, why = _fill_from_pool((x_syn, y_syn), counts, seed)
    if fill is not None:
        arms["real+fill"] = {
            "x": torch.cat([x_real, fill[0]]),
            "y": torch.cat([y_real, fill[1]]),
            "classic": False,
            "ratio": len(fill[0]) / len(x_real),
        }
    else:
        skipped["real+fill"] = why
    arms["synthetic"] = {"x": x_syn, "y": y_syn, "classic": False, "ratio": math.inf}
    if classic:
        arms["real+classic"] = {"x": x_real, "y": y_real, "classic": True, "ratio": 0.0}
        extra = "real+fill" if "real+fill" in arms else "real+synthetic x1"
        if extra in arms:
            arms["real+classic+synthetic"] = {**arms[extra], "classic": True, "with": extra}
        else:
            skipped["real+classic+synthetic"] = f"no {extra} arm"
    return arms, skipped


def augmentation_report(
    real: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    synthetic: tuple[Tensor, Tensor],
    num_classes: int,
    class_names: Sequence[str],
    recipe: TrainingRecipe,
    arch: str = "auto",
    seeds: Sequence[int] = (0, 1, 2),
    ratios: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    classic: bool = True,
    device: torch.device | str = "cpu",
    min_steps: int = MIN_STEPS,
) -> dict[str, Any]:
    """Trains every arm with every seed; returns the report (see the module docstring)."""
    if num_classes < 2:
        raise UserError("the augmentation report needs labelled data (at least 2 classes).")
    if len(synthetic[0]) == 0:
        raise UserError("the export holds no synthetic images: the augmentation report needs some.")
    if tuple(synthetic[0].shape[1:]) != tuple(real[0].shape[1:]):
        raise UserError(
            f"the synthetic images are {tuple(synthetic[0].shape[1:])} (C, H, W) but the real ones "
            f"{tuple(real[0].shape[1:])}: evaluate against the data the model was trained on."
        )
    if not seeds:
        raise UserError(
            "augmentation.seeds=[] trains nothing: give at least one seed (3 or more for a spread)."
        )
    real = (real[0].cpu(), real[1].cpu())
    synthetic = (synthetic[0].cpu(), synthetic[1].cpu())
    device = torch.device(device)
    arch_name = resolve_arch(arch, int(real[0].shape[-1]))
    counts = torch.bincount(real[1], minlength=num_classes).tolist()
    scarce = scarce_classes(counts)
    arms, skipped = plan_arms(real, synthetic, num_classes, ratios, classic)
    augment = classic_augmentation(int(real[0].shape[-1]))
    steps = training_steps(len(real[0]), recipe, min_steps)
    y_test = test[1].cpu()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in arms}
    total, done, started = len(arms) * len(seeds), 0, time.perf_counter()
    for name, arm in arms.items():
        for seed in seeds:
            done += 1
            log.info(
                f"augmentation report [{done}/{total}] {name}, seed {seed}: {len(arm['x'])} training images "
                f"({time.perf_counter() - started:.0f} s so far)"
            )
            network = fit_classifier(
                arm["x"],
                arm["y"],
                arch_name,
                num_classes,
                TrainingRecipe(**{**asdict(recipe), "seed": seed}),
                device,
                augment=augment if arm["classic"] else None,
                val=val,
                steps=steps,
            )
            predicted = classifier_predictions(network, test[0], device)
            runs[name].append(_scores(predicted, y_test, num_classes, scarce))
    cells = {name: _summary(name, arm, runs[name], num_classes) for name, arm in arms.items()}
    real_accuracy = cells["real"]["accuracy"]["mean"]
    for name, cell in cells.items():
        if name.startswith("real+synthetic") or name == "real+fill":
            # Naive Augmentation Score (Ravuri & Vinyals 2019): accuracy gained by adding synthetic data.
            cell["nas"] = cell["accuracy"]["mean"] - real_accuracy
    if "real+classic+synthetic" in cells:
        cells["real+classic+synthetic"]["gain_over_classic"] = (
            cells["real+classic+synthetic"]["accuracy"]["mean"] - cells["real+classic"]["accuracy"]["mean"]
        )
    return {
        "arms": cells,
        "skipped": skipped,
        "seeds": list(seeds),
        "ratios": list(ratios),
        "real_class_counts": counts,
        "scarce_classes": scarce,
        "class_names": list(class_names),
        "n_real": len(real[0]),
        "n_synthetic": len(synthetic[0]),
        "n_test": len(y_test),
        "n_val": len(val[0]),
        "classifier": {
            "arch": arch_name,
            "recipe": asdict(recipe),
            "steps": steps,
            "min_steps": min_steps,
            "selection": f"best val accuracy of {recipe.epochs} evenly spaced checks",
        },
        "classic": {
            "transforms": "RandomAffine(10 deg, 8% shift, 0.9-1.1 scale, 8 deg shear) + ElasticTransform",
            "images_per_draw": GROUP,
        },
        "seconds": time.perf_counter() - started,
    }


def _scores(predicted: Tensor, target: Tensor, num_classes: int, scarce: Sequence[int]) -> dict[str, Any]:
    recall = multiclass_recall(predicted, target, num_classes=num_classes, average=None)
    return {
        "accuracy": float(multiclass_accuracy(predicted, target, num_classes=num_classes, average="micro")),
        "balanced_accuracy": float(
            multiclass_recall(predicted, target, num_classes=num_classes, average="macro")
        ),
        "per_class_recall": [float(r) for r in recall],
        "scarce_recall": float(recall[list(scarce)].mean()) if scarce else None,
    }


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": list(values),
    }


def _summary(name: str, arm: dict[str, Any], runs: list[dict[str, Any]], num_classes: int) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "n_train": len(arm["x"]),
        "ratio": arm["ratio"] if math.isfinite(arm["ratio"]) else None,
        "classic": arm["classic"],
        "accuracy": _spread([r["accuracy"] for r in runs]),
        "balanced_accuracy": _spread([r["balanced_accuracy"] for r in runs]),
        "per_class_recall": {
            "mean": [statistics.fmean(r["per_class_recall"][c] for r in runs) for c in range(num_classes)],
            "std": [
                statistics.stdev([r["per_class_recall"][c] for r in runs]) if len(runs) > 1 else 0.0
                for c in range(num_classes)
            ],
        },
    }
    if runs[0]["scarce_recall"] is not None:
        cell["scarce_recall"] = _spread([r["scarce_recall"] for r in runs])
    if "with" in arm:
        cell["with"] = arm["with"]
    return cell


def report_markdown(report: dict[str, Any], title: str) -> str:
    """The report as a markdown table (mean ± std over seeds; scarce classes marked with *)."""
    names = report["class_names"] or [str(c) for c in range(len(report["real_class_counts"]))]
    scarce = set(report["scarce_classes"])
    header = ["arm", "train images", "accuracy", "balanced acc.", "scarce recall", "NAS"]
    header += [f"{names[c]}{'*' if c in scarce else ''}" for c in range(len(names))]
    lines = [
        f"# {title}",
        "",
        f"Classifier: {report['classifier']['arch']}, {report['classifier']['steps']} optimizer steps per arm (the "
        f"recipe's {report['classifier']['recipe']['epochs']} epochs over the real split, at least {report['classifier']['min_steps']}), weights "
        f"chosen on the val split ({report['n_val']} images); tested on the real test split ({report['n_test']} images); "
        f"seeds {report['seeds']} (mean ± std). Real training images per class: {report['real_class_counts']}; "
        f"scarce classes (*, < {SCARCE_BELOW:.0%} of the largest): {sorted(scarce) or 'none'}. "
        "NAS: Naive Augmentation Score, accuracy minus real-only accuracy. Columns per class: recall.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, cell in report["arms"].items():
        row = [
            name + (f" ({cell['with']})" if "with" in cell else ""),
            str(cell["n_train"]),
            _pm(cell["accuracy"]),
            _pm(cell["balanced_accuracy"]),
            _pm(cell["scarce_recall"]) if "scarce_recall" in cell else "",
            f"{cell['nas']:+.4f}" if "nas" in cell else "",
        ]
        recall = cell["per_class_recall"]
        row += [f"{m:.3f} ± {s:.3f}" for m, s in zip(recall["mean"], recall["std"])]
        lines.append("| " + " | ".join(row) + " |")
    if report["skipped"]:
        lines += ["", "Not run: " + "; ".join(f"{k} ({v})" for k, v in report["skipped"].items()) + "."]
    return "\n".join(lines) + "\n"


def _pm(spread: dict[str, float]) -> str:
    return f"{spread['mean']:.4f} ± {spread['std']:.4f}"


def plot_report(report: dict[str, Any], path: str) -> None:
    """Accuracy and balanced accuracy against the synthetic ratio, one line per arm (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = report["arms"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ratio_arms = sorted(
        (cell["ratio"], name) for name, cell in arms.items() if name.startswith("real+synthetic x")
    )
    for ax, key in zip(axes, ("accuracy", "balanced_accuracy")):
        xs = [0.0] + [r for r, _ in ratio_arms]
        cells = [arms["real"]] + [arms[name] for _, name in ratio_arms]
        ax.errorbar(
            xs,
            [c[key]["mean"] for c in cells],
            yerr=[c[key]["std"] for c in cells],
            marker="o",
            capsize=3,
            label="real + synthetic",
        )
        lines = ("real", "real+classic", "synthetic", "real+fill", "real+classic+synthetic")
        styles = (":", "--", "-.", "-", (0, (3, 1, 1, 1)))
        for index, (name, style) in enumerate(zip(lines, styles)):
            if name in arms:
                ax.axhline(arms[name][key]["mean"], linestyle=style, color=f"C{index + 1}", label=name)
        ax.set_xlabel("synthetic images / real images")
        ax.set_ylabel(key.replace("_", " ") + " (real test split)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"mean ± std over seeds {report['seeds']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_augmentation_report(root: Path, report: dict[str, Any]) -> dict[str, Path]:
    """``<root>.augmentation.{json,md,png}`` beside the export (its checksums stay valid)."""
    paths = {ext: root.parent / f"{root.name}.augmentation.{ext}" for ext in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n")
    paths["md"].write_text(report_markdown(report, f"Augmentation report of `{root.name}`"))
    plot_report(report, str(paths["png"]))
    return paths


def flat_augmentation(report: dict[str, Any]) -> dict[str, float]:
    """``augmentation/<arm>/<score>`` means (and NAS) for the loggers and ``metrics.json``."""
    flat: dict[str, float] = {}
    for name, cell in report["arms"].items():
        key = name.replace("+", "_").replace(" ", "_")
        for score in ("accuracy", "balanced_accuracy", "scarce_recall"):
            if score in cell:
                flat[f"augmentation/{key}/{score}"] = cell[score]["mean"]
                flat[f"augmentation/{key}/{score}_std"] = cell[score]["std"]
        if "nas" in cell:
            flat[f"augmentation/{key}/nas"] = cell["nas"]
    return flat
