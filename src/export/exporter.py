"""Turns a trained model into a synthetic dataset directory (see :mod:`src.export.writer`)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from src.export.gate import (
    DEFAULT_MIN_AGREEMENT,
    ClassGate,
    GateClassifier,
    GateMode,
    finish_gate,
    missing_classifier,
    skipped_gate,
)
from src.export.labels import plan_labels
from src.export.writer import SyntheticDatasetWriter, check_out_dir
from src.metrics.membership import json_scores
from src.models.base import GenerativeModule
from src.utils.errors import UserError
from src.utils.images import to_uint8
from src.utils.logging import get_logger
from src.utils.types import Fraction, NonNegativeInt, PositiveInt, UnitInterval

log = get_logger(__name__)
ROOT = Path(__file__).resolve().parents[2]

# (uint8 images (B, C, H, W)) -> labels (B,): the domain classifier labelling unconditional samples.
PseudoLabeler = Callable[[Tensor], Tensor]
# (uint8 images (N, C, H, W)) -> (scores, protocol) against the real test split.
ScoreFunction = Callable[[Tensor], tuple[dict[str, float], dict[str, Any]]]
# (uint8 images (N, C, H, W)) -> (audit scores, protocol): the membership-inference audit.
Auditor = Callable[[Tensor], tuple[dict[str, float], dict[str, Any]]]
# (uint8 images (B, C, H, W)) -> class probabilities (B, K): the domain classifier, for rejection.
ClassProbabilities = Callable[[Tensor], Tensor]


@dataclass
class FillOptions:
    """The ``fill`` config group (``fill=balance``): gap filling of the real training split.

    Args:
        target: ``balance`` (every class up to the largest class of the real training split) or
            ``N`` (every class up to N images; ``fill=balance fill.target=N``).
        gate: the per-class gate of the fill (``warn`` | ``filter`` | ``refuse``; see
            :mod:`src.export.gate`); null: the export's ``gate``.
        min_agreement: a class whose generated images the domain classifier labels as the class less
            often than this fails the gate; null: the export's ``min_agreement``.
    """

    target: Literal["balance"] | PositiveInt = "balance"
    gate: GateMode | None = None
    min_agreement: UnitInterval | None = None

    def __post_init__(self) -> None:
        # The config checker has checked the types; this guards calls from Python.
        if isinstance(self.target, bool) or (isinstance(self.target, str) and self.target != "balance"):
            raise UserError(
                f"fill.target={self.target} is not a fill target: use balance (up to the largest class) or "
                "a number N (up to N images per class)."
            )
        if isinstance(self.target, int) and self.target < 1:
            raise UserError(f"fill.target={self.target} is not a fill target: use a number of images >= 1.")
        if self.gate not in (None, "warn", "filter", "refuse"):
            raise UserError(f"fill.gate={self.gate} is not a gate mode: use warn, filter or refuse.")


@dataclass
class ExportOptions:
    """What `src.generate` (or `src.train export.enabled=true`) writes.

    Args:
        n: number of samples.
        out_dir: target directory (must be empty or absent unless ``overwrite``).
        seed: noise (and label order) seed: the same seed gives the same dataset.
        batch_size: samples generated per forward pass.
        labels: conditional models: ``balanced``, ``proportional`` or a list of classes.
        format: ``png`` (ImageFolder + metadata.csv), ``npz`` or ``both``.
        overwrite: replace a non-empty ``out_dir``.
        workers: threads encoding PNGs (0: encode in the main thread).
        score: score the set against the real test split (manifest ``scores``).
        audit: run the membership-inference audit (the model's white-box attack and the
            closest-synthetic-image attack on the exported images; manifest ``audit``, dataset card).
        license: the ``license`` of the dataset card (a Hugging Face license id; ``unknown`` when
            the real data's terms decide).
        enabled: ``src.train`` only: export with the best checkpoint after training.
        fill: gap filling (:class:`FillOptions`, the ``fill`` config group: ``fill=balance``):
            generates per class exactly the count missing to the target, and ``n`` is then ignored
            (see :mod:`src.export.fill`). From Python a target alone (``"balance"`` or ``N``) or a
            dict of :class:`FillOptions` keys will do. In ``src.train`` the group sits under
            ``export``: ``fill@export.fill=balance``.
        include_real: with ``fill``: the export holds the real training images too (``source=real``).
        accept_threshold: with ``fill`` and an unconditional model: keep a sample for class ``c``
            when the domain classifier gives ``c`` at least this probability.
        max_draws: at most this many samples drawn per missing image (``fill`` with an unconditional
            model: then an ``Error:``) or per requested image of a class (``gate=filter``: then the
            class stays short, and is named).
        gate: the per-class quality gate of conditional exports and fills (:mod:`src.export.gate`):
            ``warn`` (keep everything, name the classes under ``min_agreement``), ``filter`` (keep
            only images the domain classifier labels as their class, drawing more) or ``refuse``
            (an ``Error:`` and no export). A fill's ``fill.gate`` overrides it.
        min_agreement: the share of a class's generated images the classifier must label as that
            class; ``fill.min_agreement`` overrides it for fills.
    """

    n: PositiveInt = 10_000
    out_dir: str | None = None
    seed: int = 0
    batch_size: PositiveInt = 500
    labels: str | list[int | str] = "balanced"
    format: Literal["png", "npz", "both"] = "both"
    overwrite: bool = False
    workers: NonNegativeInt = 2
    score: bool = True
    audit: bool = False
    license: str = "unknown"
    enabled: bool = False
    fill: FillOptions | None = None
    include_real: bool = True
    accept_threshold: Fraction = 0.9
    max_draws: PositiveInt = 50
    gate: GateMode = "warn"
    min_agreement: UnitInterval = DEFAULT_MIN_AGREEMENT

    def __post_init__(self) -> None:
        if isinstance(self.fill, dict):
            self.fill = FillOptions(**self.fill)
        elif isinstance(self.fill, str | int):
            self.fill = FillOptions(target=self.fill)
        if self.gate not in ("warn", "filter", "refuse"):
            raise UserError(f"gate={self.gate} is not a gate mode: use warn, filter or refuse.")

    def gate_settings(self) -> tuple[GateMode, float]:
        """``(mode, min_agreement)`` in force: a fill's own keys, else the export's."""
        fill = self.fill
        mode = fill.gate if fill is not None and fill.gate is not None else self.gate
        level = (
            fill.min_agreement if fill is not None and fill.min_agreement is not None else self.min_agreement
        )
        return mode, float(level)


def export_dataset(
    model: GenerativeModule,
    class_names: Sequence[str],
    train_labels: Tensor | None,
    options: ExportOptions,
    provenance: dict[str, Any],
    pseudo_labeler: PseudoLabeler | None = None,
    scorer: ScoreFunction | None = None,
    auditor: Auditor | None = None,
    train_split: tuple[Tensor, Tensor] | None = None,
    class_probabilities: ClassProbabilities | None = None,
    min_scored: int = 0,
    gate_classifier: GateClassifier | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Generates ``options.n`` samples and writes them to ``options.out_dir``; returns (dir, manifest).

    With ``options.fill`` it fills the real ``train_split`` up to the target instead
    (:func:`src.export.fill.export_filled`). Conditional generation passes the per-class gate of
    ``gate_classifier`` (manifest ``gate``; :mod:`src.export.gate`).
    """
    if model.data_kind != "image":
        raise UserError(f"export writes image datasets; this model generates {model.data_kind} data.")
    out_dir = Path(options.out_dir).expanduser()
    check_out_dir(out_dir, options.overwrite)
    if options.fill is not None:
        from src.export.fill import export_filled  # fill builds on this module's helpers

        return export_filled(
            model,
            class_names,
            train_split,
            options,
            provenance,
            class_probabilities,
            scorer,
            min_scored,
            gate_classifier,
        )
    labels, label_source = _labels(model, class_names, train_labels, options, pseudo_labeler)
    names = (
        list(class_names)
        if (model.num_classes or pseudo_labeler is not None) and class_names
        else ["unlabelled"]
    )
    gate_mode, min_agreement = options.gate_settings()
    gate = None
    if labels is not None and gate_classifier is not None:
        requested = torch.bincount(labels, minlength=len(names)).tolist()
        gate = ClassGate(gate_classifier, names, requested, gate_mode, min_agreement)
    elif labels is not None:
        missing_classifier(gate_mode)
    elif gate_mode != "warn":
        log.info(
            f"gate={gate_mode} does not apply: the domain classifier itself labels an unconditional model's samples"
        )

    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(options.seed)
    samples: list[Tensor] = []
    keep_samples = (scorer is not None and options.score) or (auditor is not None and options.audit)
    png, npz = options.format in ("png", "both"), options.format in ("npz", "both")

    def write(images: Tensor, batch_labels: Tensor | None) -> None:
        count = len(images)
        values = batch_labels.cpu().numpy() if batch_labels is not None else np.zeros(count, np.int64)
        writer.add(images.permute(0, 2, 3, 1).cpu().numpy(), values)
        if keep_samples:
            samples.append(images.cpu())

    def sample(batch_labels: Tensor) -> Tensor:
        return to_uint8(
            model.sample(len(batch_labels), labels=batch_labels.to(model.device), generator=generator)
        )

    with SyntheticDatasetWriter(
        out_dir, names, png=png, npz=npz, workers=options.workers, n_total=options.n
    ) as writer:
        for start in tqdm(range(0, options.n, options.batch_size), desc="export", unit="batch", leave=False):
            count = min(options.batch_size, options.n - start)
            batch_labels = labels[start : start + count].to(model.device) if labels is not None else None
            images = to_uint8(model.sample(count, labels=batch_labels, generator=generator))
            if label_source == "pseudo":
                batch_labels = pseudo_labeler(images)
            if gate is not None:
                images, batch_labels = gate.keep(images, batch_labels)
            write(images, batch_labels)
        if gate is not None:
            for images, batch_labels in gate.top_up(sample, options.batch_size, options.max_draws):
                write(images, batch_labels)
        # Before the scores and the audit: a refused export stops here, and the writer's temporary
        # directory goes with it.
        if gate is not None:
            report = finish_gate(gate)
        elif labels is not None:
            report = skipped_gate(gate_mode, min_agreement, "the checkpoint's run has no domain classifier")
        else:
            report = None
        manifest = build_manifest(model, names, writer, options, label_source, provenance)
        if report is not None:
            manifest["gate"] = report
        if samples and scorer is not None and options.score:
            scores, protocol = scorer(torch.cat(samples))
            manifest["scores"] = scores
            manifest["score_protocol"] = protocol
        if samples and auditor is not None and options.audit:
            audit_scores, audit_protocol = auditor(torch.cat(samples))
            # Unmeasurable TPR levels are NaN: null in the manifest, which must stay valid JSON.
            manifest["audit"] = {"scores": json_scores(audit_scores), "protocol": audit_protocol}
        path = writer.finish(manifest)
    log.info(f"exported {writer.count} samples to {path}")
    return path, manifest


def _labels(
    model: GenerativeModule,
    class_names: Sequence[str],
    train_labels: Tensor | None,
    options: ExportOptions,
    pseudo_labeler: PseudoLabeler | None,
) -> tuple[Tensor | None, str]:
    if model.num_classes:
        return plan_labels(options.labels, options.n, class_names, train_labels), "conditional"
    if options.labels != "balanced":
        raise UserError(
            f"labels={options.labels} needs a conditional model (cvae, cgan); this one is unconditional."
        )
    return None, "pseudo" if pseudo_labeler is not None else "none"


def build_manifest(
    model: GenerativeModule,
    names: list[str],
    writer: SyntheticDatasetWriter,
    options: ExportOptions,
    label_source: str,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    export = {k: v for k, v in asdict(options).items() if k != "enabled"}
    sources = writer.sources_summary()
    return {
        "n": int(writer.count),
        "image_shape": [model.image_size, model.image_size, model.channels],
        "classes": [
            {
                "index": i,
                "name": name,
                "folder": writer.folders[i],
                "count": int(writer.class_counts[i]),
                **{source: counts["per_class"][i] for source, counts in sources.items()},
            }
            for i, name in enumerate(names)
        ],
        "sources": sources,
        **_generation_facts(model, options, label_source, export, provenance),
    }


def build_table_manifest(
    model: GenerativeModule,
    schema: Any,
    writer: Any,
    options: ExportOptions,
    label_source: str,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """The manifest of a table export (:mod:`src.export.table_export`): the image manifest's
    provenance, with the table's columns and per-class row counts instead of image facts."""
    export = {k: v for k, v in asdict(options).items() if k not in ("enabled", "format", "workers")}
    sources = writer.sources_summary()
    names = schema.class_names or ["all rows"]
    return {
        "kind": "table",
        "n": int(writer.count),
        "files": ["data.csv", "data.parquet"],
        "columns": schema.to_dict()["columns"],
        "target": schema.target,
        "classes": [
            {
                "index": i,
                "name": name,
                "count": int(sum(entry["per_class"][i] for entry in sources.values())),
                **{source: entry["per_class"][i] for source, entry in sources.items()},
            }
            for i, name in enumerate(names)
        ],
        "sources": sources,
        **_generation_facts(model, options, label_source, export, provenance),
    }


def _generation_facts(
    model: GenerativeModule,
    options: ExportOptions,
    label_source: str,
    export: dict[str, Any],
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """What every manifest records of how its data were generated, images and tables alike."""
    return {
        "label_source": label_source,
        "seed": options.seed,
        "weights": "ema" if getattr(model, "uses_ema", False) else "raw",
        "export": export,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software": software_versions(),
        "privacy": privacy_block(model),
        **provenance,
    }


NO_PRIVACY = (
    "No formal privacy guarantee: the model was trained on its data without differential privacy, "
    "so its samples may reproduce or reveal training records (images or rows)."
)


def privacy_block(model: GenerativeModule) -> dict[str, Any]:
    """The checkpoint's privacy record (``privacy=dp``), or a plain statement that there is none."""
    record = getattr(model, "privacy_record", None)
    if record:
        return dict(record)
    return {"mechanism": "none", "statement": NO_PRIVACY}


def software_versions() -> dict[str, Any]:
    commit, dirty = _git_state()
    return {
        "genlab": metadata.version("genlab") if _installed("genlab") else None,
        "git_commit": commit,
        "git_dirty": dirty,
        "torch": torch.__version__,
    }


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def _git_state() -> tuple[str | None, bool | None]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None
