"""``src.inpaint``: mask real images, fill them with a trained model, score, and export.

The filled images are written in the export layout of ``src.generate`` (ImageFolder PNGs,
``metadata.csv`` with ``source=inpainted``, ``data.npz``, ``manifest.json``, ``SHA256SUMS``)
plus ``masks.npz`` (the masks, True = missing, and the images' indices in the split). The
manifest's ``inpainting`` block holds the mask kind and the options it used, the method and the
settings it used (defaults resolved), and the scores of the model and of the two baselines;
``<out_dir>.preview.png`` beside the export shows, in labelled rows, original / masked / the
model's point estimate / one draw of the model / mean fill / nearest-neighbour fill for the first
images.

The model is a sampler: one draw of the missing pixels is one plausible fill, and its squared
error counts the spread of the posterior as well as its bias, so MSE / PSNR / SSIM of a single draw
are worse than those of the posterior mean by construction (the mean minimises the expected
squared error). ``k`` draws are therefore made per image and their mean is the model's point
estimate (the ``model`` row, and the exported images); the first draw is scored beside it
(``model_single_draw``). Observed pixels stay those of the input in both.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

from src.data.base import GenerativeDataModule
from src.export.exporter import ExportOptions, build_manifest
from src.export.writer import SyntheticDatasetWriter, check_out_dir
from src.inpainting.masks import MaskKind, Side, make_masks, mask_settings
from src.inpainting.scores import (
    classifier_accuracies,
    masked,
    mean_fill,
    missing_pixel_errors,
    nearest_neighbour_fill,
    posterior_mean,
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
        k: draws per image; their mean is the model's point estimate (``model``), the first is
            scored as ``model_single_draw``.
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
    k: PositiveInt = 8
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
    settings = model.inpaint_settings(options.steps, **options.method_options())
    started = time.perf_counter()
    point, single = [], []
    generator = torch.Generator(device=model.device).manual_seed(options.seed)
    for start in range(0, len(x), options.batch_size):
        stop = min(len(x), start + options.batch_size)
        log.info(
            f"inpaint ({method}, {options.k} draws): images {start}-{stop} of {len(x)} "
            f"({time.perf_counter() - started:.0f} s so far)"
        )
        xb, mb = x[start:stop], masks[start:stop]
        draws = torch.stack(
            [
                model.inpaint(
                    xb,
                    mb,
                    labels=y[start:stop].to(model.device) if model.num_classes else None,
                    generator=generator,
                    method=method,
                    steps=options.steps,
                    **options.method_options(),
                ).cpu()
                for _ in range(options.k)
            ]
        )
        point.append(posterior_mean(draws, xb, mb))
        single.append(draws[0])
    filled_x = torch.cat(point)
    seconds = time.perf_counter() - started
    train = datamodule.split("train")[0].cpu()
    versions = {
        "model": filled_x,
        "model_single_draw": torch.cat(single),
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
            # The options this mask kind uses, with the values used (defaults resolved).
            "mask_options": mask_settings(
                options.mask, int(x.shape[-1]), size=options.mask_size, blocks=options.mask_blocks,
                fraction=options.mask_fraction, side=options.mask_side,
            ),
            "missing_fraction": float(masks.float().mean()),
            "method": method,
            "method_options": settings,
            "k": options.k,
            "point_estimate": f"mean of {options.k} draws per image (exported; scores 'model')",
            "split": options.split,
            "seconds": seconds,
            "preview_rows": list(preview_rows(options.k).values()),
            "scores": scores,
        }  # fmt: skip
        if classifier_description:
            manifest["inpainting"]["classifier"] = classifier_description
        path = writer.finish(manifest)
    write_preview(out_dir.parent / f"{out_dir.name}.preview.png", x, masks, versions, options.k)
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


def preview_rows(k: int) -> dict[str, str]:
    """The preview's rows, top to bottom: version name -> the label drawn beside the row."""
    return {
        "original": "original",
        "masked": "masked",
        "model": f"model: mean of {k} draw{'s' if k > 1 else ''}",
        "model_single_draw": "model: one draw",
        "mean_fill": "mean-image fill",
        "nearest_neighbour_fill": "nearest neighbour",
    }


def write_preview(
    path: Path, original: Tensor, masks: Tensor, versions: dict[str, Tensor], k: int
) -> list[str]:
    """The first ``PREVIEW`` images in rows (see :func:`preview_rows`), each row named in a left margin.

    Returns the row labels, top to bottom.
    """
    count = min(PREVIEW, len(original))
    images = {"original": original[:count], "masked": masked(original[:count], masks[:count])}
    images.update({name: v[:count] for name, v in versions.items()})
    names = [name for name in preview_rows(k) if name in images]
    labels = [preview_rows(k)[name] for name in names]
    pad = 2
    grid = make_grid(
        torch.cat([images[name] for name in names]).float() / 255.0, nrow=count, padding=pad, pad_value=0.5
    )
    pixels = grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()
    picture = Image.fromarray(pixels.numpy())
    # Small images (28 px digits) are scaled up so that a row is taller than a line of text.
    scale = max(1, -(-40 // int(original.shape[-2])))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(picture)
    boxes = [measure.textbbox((0, 0), label, font=font) for label in labels]
    margin = max(box[2] - box[0] for box in boxes) + 12
    canvas = Image.new("RGB", (picture.width + margin, picture.height), "white")
    canvas.paste(picture, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    row = int(original.shape[-2])
    for i, (label, box) in enumerate(zip(labels, boxes)):
        middle = (pad + i * (row + pad) + row / 2) * scale
        draw.text((6, middle - (box[3] + box[1]) / 2), label, fill="black", font=font)
    canvas.save(path)
    return labels
