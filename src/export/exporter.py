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

from src.export.labels import plan_labels
from src.export.writer import SyntheticDatasetWriter, check_out_dir
from src.metrics.membership import json_scores
from src.models.base import GenerativeModule
from src.utils.errors import UserError
from src.utils.images import to_uint8
from src.utils.logging import get_logger
from src.utils.types import Fraction, NonNegativeInt, PositiveInt

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
        fill: gap filling: ``balance`` (every class up to the largest class of the real training
            split) or ``N`` (every class up to N images); generates per class exactly the missing
            count, and ``n`` is then ignored (see :mod:`src.export.fill`).
        include_real: with ``fill``: the export holds the real training images too (``source=real``).
        accept_threshold: with ``fill`` and an unconditional model: keep a sample for class ``c``
            when the domain classifier gives ``c`` at least this probability.
        max_draws: with ``fill`` and an unconditional model: at most this many samples drawn per
            missing image before giving up with an ``Error:``.
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
    fill: str | PositiveInt | None = None
    include_real: bool = True
    accept_threshold: Fraction = 0.9
    max_draws: PositiveInt = 50

    def __post_init__(self) -> None:
        if isinstance(self.fill, str) and self.fill != "balance":
            raise UserError(
                f"fill={self.fill} is not a fill target: use fill=balance (up to the largest class) or fill=N (N per class)."
            )


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
) -> tuple[Path, dict[str, Any]]:
    """Generates ``options.n`` samples and writes them to ``options.out_dir``; returns (dir, manifest).

    With ``options.fill`` it fills the real ``train_split`` up to the target instead
    (:func:`src.export.fill.export_filled`).
    """
    if model.data_kind != "image":
        raise UserError("export writes image datasets; this model generates 2-D points.")
    out_dir = Path(options.out_dir).expanduser()
    check_out_dir(out_dir, options.overwrite)
    if options.fill is not None:
        from src.export.fill import export_filled  # fill builds on this module's helpers

        return export_filled(
            model, class_names, train_split, options, provenance, class_probabilities, scorer, min_scored
        )
    labels, label_source = _labels(model, class_names, train_labels, options, pseudo_labeler)
    names = (
        list(class_names)
        if (model.num_classes or pseudo_labeler is not None) and class_names
        else ["unlabelled"]
    )

    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(options.seed)
    samples: list[Tensor] = []
    png, npz = options.format in ("png", "both"), options.format in ("npz", "both")
    with SyntheticDatasetWriter(
        out_dir, names, png=png, npz=npz, workers=options.workers, n_total=options.n
    ) as writer:
        for start in tqdm(range(0, options.n, options.batch_size), desc="export", unit="batch", leave=False):
            count = min(options.batch_size, options.n - start)
            batch_labels = labels[start : start + count].to(model.device) if labels is not None else None
            images = to_uint8(model.sample(count, labels=batch_labels, generator=generator))
            if label_source == "pseudo":
                batch_labels = pseudo_labeler(images)
            values = batch_labels.cpu().numpy() if batch_labels is not None else np.zeros(count, np.int64)
            writer.add(images.permute(0, 2, 3, 1).cpu().numpy(), values)
            if (scorer is not None and options.score) or (auditor is not None and options.audit):
                samples.append(images.cpu())
        manifest = build_manifest(model, names, writer, options, label_source, provenance)
        if samples and scorer is not None and options.score:
            scores, protocol = scorer(torch.cat(samples))
            manifest["scores"] = scores
            manifest["score_protocol"] = protocol
        if samples and auditor is not None and options.audit:
            audit_scores, audit_protocol = auditor(torch.cat(samples))
            # Unmeasurable TPR levels are NaN: null in the manifest, which must stay valid JSON.
            manifest["audit"] = {"scores": json_scores(audit_scores), "protocol": audit_protocol}
        path = writer.finish(manifest)
    log.info(f"exported {options.n} samples to {path}")
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
    "so its samples may reproduce or reveal training images."
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
