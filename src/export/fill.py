"""Gap filling: bring every class of a real training split up to a target with generated images.

``python -m src.generate ckpt_path=... fill=balance out_dir=...`` (or ``fill=balance
fill.target=N``) counts the real training images per class (after ``data.subset``), sets the
target (the largest class, or ``N``) and generates per class exactly the missing count:

* conditional models generate the class directly, and the per-class gate judges what they drew
  (:mod:`src.export.gate`: ``fill.gate=warn|filter|refuse``, ``fill.min_agreement``);
* unconditional models by rejection: samples are drawn in batches and the domain classifier
  keeps a sample for class ``c`` when it gives ``c`` a probability of at least
  ``accept_threshold`` (and ``c`` still lacks images). The acceptance rate is reported; after
  ``max_draws`` draws per missing image the export stops with an ``Error:`` line naming the
  classes it could not reach.

The export holds the real images (``source=real``, unless ``include_real=false``) and the
generated ones (``source=synthetic``): ``metadata.csv`` has ``file_name,label,source``, the
manifest counts both per class (``sources``, ``classes[i].real`` / ``.synthetic``) and records the
fill (``fill``: target, counts, method, acceptance) and the gate (``gate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from src.export.exporter import (
    ClassProbabilities,
    ExportOptions,
    ScoreFunction,
    build_manifest,
)
from src.export.gate import ClassGate, GateClassifier, finish_gate, missing_classifier, skipped_gate
from src.export.writer import SyntheticDatasetWriter
from src.models.base import GenerativeModule
from src.utils.errors import UserError
from src.utils.images import to_uint8
from src.utils.logging import get_logger

log = get_logger(__name__)


def fill_plan(labels: Tensor, num_classes: int, fill: str | int) -> tuple[list[int], list[int], list[int]]:
    """``(real per class, target per class, missing per class)`` for the target ``balance`` or ``N``.

    A class already at or above the target keeps all its real images and gets none generated.
    """
    have = torch.bincount(labels.cpu(), minlength=num_classes).tolist()
    level = max(have) if fill == "balance" else int(fill)
    target = [max(level, count) for count in have]
    return have, target, [t - h for t, h in zip(target, have)]


def check_fill(
    model: GenerativeModule, num_classes: int, class_probabilities: ClassProbabilities | None
) -> str:
    """The fill method for this model, or an ``Error:`` before any work."""
    if num_classes < 2:
        raise UserError(
            "fill needs labelled training data (class counts to fill up): this model's data has no classes."
        )
    if model.num_classes:
        return "conditional"
    if class_probabilities is None:
        raise UserError(
            "fill with an unconditional model keeps samples the domain classifier assigns to each class: "
            "keep metrics=domain (the default) for src.generate, or use a conditional model (cvae, cgan)."
        )
    return "rejection"


@torch.no_grad()
def generate_missing(
    model: GenerativeModule,
    missing: Sequence[int],
    options: ExportOptions,
    class_probabilities: ClassProbabilities | None,
    class_names: Sequence[str],
    gate: ClassGate | None = None,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Exactly ``missing[c]`` uint8 images of each class ``c``, grouped by class; plus the method's stats.

    ``gate`` judges conditional samples; with ``gate=filter`` a class may end short of its count
    (named in the gate's report). Samples found by rejection are only counted by it: the
    classifier chose their labels.
    """
    generator = torch.Generator(device=model.device).manual_seed(options.seed)
    total = int(sum(missing))
    if not model.num_classes:
        images, labels, stats = _rejection(
            model, missing, options, class_probabilities, class_names, generator
        )
        if gate is not None:
            gate.keep(images, labels)
        return images, labels, stats

    def sample(batch: Tensor) -> Tensor:
        return to_uint8(model.sample(len(batch), labels=batch.to(model.device), generator=generator)).cpu()

    labels = torch.repeat_interleave(torch.arange(len(missing)), torch.tensor(list(missing)))
    images, kept = [], []
    for start in range(0, total, options.batch_size):
        batch = labels[start : start + options.batch_size]
        x = sample(batch)
        if gate is not None:
            x, batch = gate.keep(x, batch)
        images.append(x)
        kept.append(batch)
    if gate is not None:
        for x, batch in gate.top_up(sample, options.batch_size, options.max_draws):
            images.append(x)
            kept.append(batch)
    draws = int(gate.drawn.sum()) if gate is not None else total
    x, y = _cat(images, model), torch.cat(kept) if kept else labels[:0]
    order = torch.argsort(y, stable=True)  # grouped by class, as the writer's folders are
    stats = {"method": "conditional", "draws": draws, "acceptance_rate": len(y) / max(1, draws)}
    return x[order], y[order], stats


def _rejection(
    model: GenerativeModule,
    missing: Sequence[int],
    options: ExportOptions,
    class_probabilities: ClassProbabilities,
    class_names: Sequence[str],
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    num_classes = len(missing)
    need = list(missing)
    kept: list[list[Tensor]] = [[] for _ in range(num_classes)]
    confident = np.zeros(num_classes, dtype=np.int64)
    limit = options.max_draws * int(sum(missing))
    draws = 0
    while any(need):
        if draws >= limit:
            short = [
                f"{class_names[c] if c < len(class_names) else c} ({need[c]} of {missing[c]} missing, "
                f"rate {confident[c] / max(1, draws):.2%})"
                for c in range(num_classes)
                if need[c]
            ]
            raise UserError(
                f"fill: after {draws} draws ({options.max_draws} per missing image) the domain classifier accepted too "
                f"few samples for class(es) {', '.join(short)} at accept_threshold={options.accept_threshold}: lower "
                "accept_threshold, raise max_draws, or use a conditional model (cvae, cgan)."
            )
        count = min(options.batch_size, limit - draws)
        images = to_uint8(model.sample(count, generator=generator)).cpu()
        draws += count
        confidence, predicted = class_probabilities(images).max(1)
        ok = confidence.cpu() >= options.accept_threshold
        predicted = predicted.cpu()
        confident += np.bincount(predicted[ok].numpy(), minlength=num_classes)
        for c in range(num_classes):
            if need[c]:
                take = images[ok & (predicted == c)][: need[c]]
                kept[c].append(take)
                need[c] -= len(take)
    images = [torch.cat(parts) if parts else None for parts in kept]
    labels = torch.repeat_interleave(torch.arange(num_classes), torch.tensor(list(missing)))
    stats = {
        "method": "rejection",
        "accept_threshold": options.accept_threshold,
        "draws": draws,
        "acceptance_rate": int(sum(missing)) / max(1, draws),
        # How often a draw is a confident sample of each class (its acceptance rate, were it short).
        "class_rate": [float(c) / max(1, draws) for c in confident],
    }
    log.info(f"fill by rejection: {sum(missing)} accepted of {draws} draws ({stats['acceptance_rate']:.1%})")
    return _cat([x for x in images if x is not None], model), labels, stats


def _cat(images: list[Tensor], model: GenerativeModule) -> Tensor:
    if images:
        return torch.cat(images)
    return torch.zeros((0, *model.sample_shape), dtype=torch.uint8)


def export_filled(
    model: GenerativeModule,
    class_names: Sequence[str],
    train_split: tuple[Tensor, Tensor] | None,
    options: ExportOptions,
    provenance: dict[str, Any],
    class_probabilities: ClassProbabilities | None,
    scorer: ScoreFunction | None,
    min_scored: int = 0,
    gate_classifier: GateClassifier | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Writes the real training split plus the generated fill; returns (dir, manifest)."""
    if train_split is None:
        raise UserError("fill needs the real training split of the model's data.")
    x_real, y_real = train_split[0].cpu(), train_split[1].cpu()
    num_classes = len(class_names)
    method = check_fill(model, num_classes, class_probabilities)
    fill_target = options.fill.target
    have, target, missing = fill_plan(y_real, num_classes, fill_target)
    gate_mode, min_agreement = options.gate_settings()
    if gate_classifier is None:
        missing_classifier(gate_mode)
        gate = None
    else:
        gate = ClassGate(gate_classifier, class_names, missing, gate_mode, min_agreement)
    log.info(
        f"fill.target={fill_target}: real per class {have} -> target {target}; generating {missing} ({method})"
    )
    model.eval()
    x_syn, y_syn, stats = generate_missing(model, missing, options, class_probabilities, class_names, gate)
    generated = torch.bincount(y_syn, minlength=num_classes).tolist()
    assert generated == list(missing) or gate_mode == "filter"
    # Before anything is written: a refused fill leaves no directory behind.
    if gate is not None:
        report = finish_gate(gate)
    else:
        report = skipped_gate(gate_mode, min_agreement, "the checkpoint's run has no domain classifier")

    out_dir = Path(options.out_dir).expanduser()
    png, npz = options.format in ("png", "both"), options.format in ("npz", "both")
    n_total = len(x_syn) + (len(x_real) if options.include_real else 0)
    with SyntheticDatasetWriter(
        out_dir, class_names, png=png, npz=npz, workers=options.workers, n_total=n_total
    ) as writer:
        parts = [("real", x_real, y_real)] if options.include_real else []
        for source, x, y in [*parts, ("synthetic", x_syn, y_syn)]:
            for start in range(0, len(x), options.batch_size):
                xb, yb = x[start : start + options.batch_size], y[start : start + options.batch_size]
                writer.add(xb.permute(0, 2, 3, 1).numpy(), yb.numpy(), source=source)
        label_source = "conditional" if method == "conditional" else "pseudo"
        manifest = build_manifest(model, list(class_names), writer, options, label_source, provenance)
        manifest["fill"] = {
            "target": fill_target,
            "include_real": options.include_real,
            "real_per_class": have,
            "target_per_class": target,
            "missing_per_class": missing,
            "generated_per_class": generated,
            **stats,
        }
        manifest["gate"] = report
        if scorer is not None and options.score:
            if len(x_syn) >= max(2, min_scored):
                manifest["scores"], manifest["score_protocol"] = scorer(x_syn)
            else:
                manifest["scores_skipped"] = f"{len(x_syn)} generated images are too few to score"
        path = writer.finish(manifest)
    log.info(
        f"exported {len(x_real) if options.include_real else 0} real + {len(x_syn)} generated images to {path}"
    )
    return path, manifest
