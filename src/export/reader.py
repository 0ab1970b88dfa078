"""Reads an exported dataset back (arrays from data.npz, or the PNGs listed in metadata.csv)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from src.export.verify import verify_dataset
from src.export.writer import ARRAYS, MANIFEST, METADATA
from src.utils.errors import UserError


@dataclass
class ExportedDataset:
    images: Tensor  # uint8 (N, C, H, W)
    labels: Tensor  # int64 (N,)
    manifest: dict[str, Any]

    @property
    def labelled(self) -> bool:
        return self.manifest.get("label_source") in ("conditional", "pseudo")


def read_export(root: Path) -> ExportedDataset:
    """Verifies ``root`` against its checksums, then loads it; a broken export is a :class:`UserError`."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"synthetic={root} is not a directory: pass the out_dir of `src.generate`.")
    problems = verify_dataset(root)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise UserError(
            f"synthetic={root} fails verification ({shown}): export it again or restore the files."
        )
    manifest = json.loads((root / MANIFEST).read_text())
    if (root / ARRAYS).is_file():
        with np.load(root / ARRAYS) as arrays:
            images, labels = arrays["images"], arrays["labels"]
    else:
        with open(root / METADATA, newline="") as handle:
            rows = list(csv.DictReader(handle))
        images = np.stack([_read_png(root / row["file_name"]) for row in rows])
        labels = np.array([int(row["label"]) for row in rows], dtype=np.int64)
    return ExportedDataset(
        torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
        torch.from_numpy(labels),
        manifest,
    )


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array
