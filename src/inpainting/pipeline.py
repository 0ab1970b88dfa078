"""``src.inpaint``: mask real images, fill them with a trained model, score, and export.

The filled images are written in the export layout of ``src.generate`` (ImageFolder PNGs,
``metadata.csv`` with ``source=inpainted``, ``data.npz``, ``manifest.json``, ``SHA256SUMS``)
plus ``masks.npz`` (the masks, True = missing, and the images' indices in the split). The
manifest's ``inpainting`` block holds the mask kind and options, the method and its settings, and
the scores of the model and of the two baselines; ``<out_dir>.preview.png`` beside the export
shows original / masked / model / mean fill / nearest-neighbour fill for the first images.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

from src.data.base import GenerativeDataModule
from src.export.exporter import ExportOptions, build_manifest
from src.export.writer import SyntheticDatasetWriter, check_out_dir
from src.inpainting.masks import MaskKind, Side, make_masks
from src.inpainting.scores import (
    classifier_accuracies,
    masked,
    mean_fill,
    missing_pixel_errors,
    nearest_neighbour_fill,
    recovered_fraction,
)
from src.models.base import GenerativeModule
from src.utils.errors import UserError
from src.utils.logging import get_logger
from src.utils.types import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

log = get_logger(__name__)
PREVIEW = 8


@dataclass
class InpaintOptions:
    """The options of ``conf/inpaint.yaml``.

    Args:
        out_dir: the export directory (must be empty or absent unless ``overwrite``).
        mask: ``center`` | ``blocks`` | ``pixels`` | ``half`` (see :mod:`src.inpainting.masks`).
        mask_size: side of the centre square / of each block (null: half / a quarter of the image).
        mask_blocks: number of blocks (``blocks``).
        mask_fraction: share of missing pixels (``pixels``).
        mask_side: ``left`` | ``right`` | ``top`` | ``bottom`` (``half``).
        split: the real split whose images are masked and filled.
        n: the first ``n`` images of the split (null: all).
        seed: masks and the methods' random draws.
        method: null (the model's default: ``mwg`` for VAEs, ``latent`` for GANs) or ``pseudo_gibbs``.
        steps: chain length (VAE, default 200) or optimisation steps (GAN, default 300).
        restarts, lr, prior_weight: GANs only: random starts per image (4), Adam's step size
            (0.05), weight of the discriminator term (0.003).
        batch_size: images filled per call.
    """

    out_dir: str
    mask: MaskKind = "center"
    mask_size: PositiveInt | None = None
    mask_blocks: PositiveInt = 4
    mask_fraction: Fraction = 0.5
    mask_side: Side = "left"
    split: Literal["train", "val", "test"] = "test"
    n: PositiveInt | None = None
    seed: int = 0
    method: str | None = None
    steps: PositiveInt | None = None
    restarts: PositiveInt | None = None
    lr: PositiveFloat | None = None
    prior_weight: NonNegativeFloat | None = None
    batch_size: PositiveInt = 250
    format: Literal["png", "npz", "both"] = "both"
    overwrite: bool = False
    workers: NonNegativeInt = 2

    def method_options(self) -> dict[str, Any]:
        """The model-specific settings that were set (``inpaint(**options)``)."""
        extra = {"restarts": self.restarts, "lr": self.lr, "prior_weight": self.prior_weight}
        return {k: v for k, v in extra.items() if v is not None}


def inpaint_split(
    model: GenerativeModule,
    datamodule: GenerativeDataModule,
    options: InpaintOptions,
    provenance: dict[str, Any],
    classify: Any = None,
    classifier_description: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Masks, fills, scores and exports; returns (out_dir, manifest). ``classify``: uint8 -> logits."""
    if model.data_kind != "image":
        raise UserError("src.inpaint fills images; this model generates 2-D points.")
    out_dir = Path(options.out_dir).expanduser()
    check_out_dir(out_dir, options.overwrite)
    x, y = (t.cpu() for t in datamodule.split(options.split))
    if options.n is not None:
        x, y = x[: options.n], y[: options.n]
    masks = make_masks(
        options.mask,
        len(x),
        int(x.shape[-1]),
        seed=options.seed,
        size=options.mask_size,
        blocks=options.mask_blocks,
        fraction=options.mask_fraction,
        side=options.mask_side,
    )
    method = options.method or model.inpaint_methods[0]
    started = time.perf_counter()
    filled = []
    generator = torch.Generator(device=model.device).manual_seed(options.seed)
    for start in range(0, len(x), options.batch_size):
        stop = min(len(x), start + options.batch_size)
        log.info(
            f"inpaint ({method}): images {start}-{stop} of {len(x)} ({time.perf_counter() - started:.0f} s so far)"
        )
        filled.append(
            model.inpaint(
                x[start:stop],
                masks[start:stop],
                labels=y[start:stop].to(model.device) if model.num_classes else None,
                generator=generator,
                method=method,
                steps=options.steps,
                **options.method_options(),
            ).cpu()
        )
    filled_x = torch.cat(filled)
    seconds = time.perf_counter() - started
    train = datamodule.split("train")[0].cpu()
    versions = {
        "model": filled_x,
        "mean_fill": mean_fill(x, masks, train),
        "nearest_neighbour_fill": nearest_neighbour_fill(x, masks, train),
    }
    scores: dict[str, Any] = {name: missing_pixel_errors(v, x, masks) for name, v in versions.items()}
    if classify is not None:
        accuracy = classifier_accuracies(classify, y, {"original": x, "masked": masked(x, masks), **versions})
        for name in versions:
            accuracy[f"{name}_recovered"] = recovered_fraction(
                accuracy["original"], accuracy["masked"], accuracy[name]
            )
        scores["classifier_accuracy"] = accuracy
    names = list(datamodule.class_names) if datamodule.num_classes else ["unlabelled"]
    labels = y if datamodule.num_classes else torch.zeros_like(y)
    png, npz = options.format in ("png", "both"), options.format in ("npz", "both")
    export_options = ExportOptions(
        n=len(x), out_dir=str(out_dir), seed=options.seed, batch_size=options.batch_size,
        format=options.format, overwrite=options.overwrite, workers=options.workers, score=False,
    )  # fmt: skip
    with SyntheticDatasetWriter(
        out_dir, names, png=png, npz=npz, workers=options.workers, n_total=len(x)
    ) as writer:
        for start in range(0, len(x), options.batch_size):
            part = filled_x[start : start + options.batch_size]
            writer.add(
                part.permute(0, 2, 3, 1).numpy(),
                labels[start : start + len(part)].numpy(),
                source="inpainted",
            )
        writer.add_file("masks.npz", _masks_npz(masks, options))
        manifest = build_manifest(
            model, names, writer, export_options, "real" if datamodule.num_classes else "none", provenance
        )
        manifest["export"] = asdict(options)
        manifest["inpainting"] = {
            "mask": options.mask,
            "mask_options": {
                "size": options.mask_size, "blocks": options.mask_blocks,
                "fraction": options.mask_fraction, "side": options.mask_side,
            },
            "missing_fraction": float(masks.float().mean()),
            "method": method,
            "method_options": {"steps": options.steps, **options.method_options()},
            "split": options.split,
            "seconds": seconds,
            "scores": scores,
        }  # fmt: skip
        if classifier_description:
            manifest["inpainting"]["classifier"] = classifier_description
        path = writer.finish(manifest)
    write_preview(out_dir.parent / f"{out_dir.name}.preview.png", x, masks, versions)
    log.info(f"inpainted {len(x)} images of the {options.split} split into {path}")
    return path, manifest


def _masks_npz(masks: Tensor, options: InpaintOptions) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        masks=masks[:, 0].numpy(),
        indices=np.arange(len(masks)),
        split=np.array(options.split),
        kind=np.array(options.mask),
    )
    return buffer.getvalue()


def write_preview(path: Path, original: Tensor, masks: Tensor, versions: dict[str, Tensor]) -> None:
    """Rows: original, masked, then each fill, for the first ``PREVIEW`` images."""
    k = min(PREVIEW, len(original))
    rows = [original[:k], masked(original[:k], masks[:k])] + [v[:k] for v in versions.values()]
    grid = make_grid(torch.cat(rows).float() / 255.0, nrow=k, padding=2, pad_value=0.5)
    save_image(grid, str(path))
