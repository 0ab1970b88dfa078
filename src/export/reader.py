"""Reads an exported dataset back (arrays from data.npz, or the PNGs listed in metadata.csv; tables
from data.parquet)."""

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
    sources: list[str] | None = None  # "synthetic" | "real" | "inpainted" per image

    def only(self, source: str) -> tuple[Tensor, Tensor]:
        """The ``(images, labels)`` of one source (all of them for exports without a source column)."""
        if self.sources is None:
            return (self.images, self.labels) if source == "synthetic" else (self.images[:0], self.labels[:0])
        keep = torch.tensor([s == source for s in self.sources], dtype=torch.bool)
        return self.images[keep], self.labels[keep]

    @property
    def labelled(self) -> bool:
        return self.manifest.get("label_source") in ("conditional", "pseudo")


def read_export(root: Path, option: str = "synthetic") -> ExportedDataset:
    """Verifies ``root`` against its checksums, then loads it; a broken export is a :class:`UserError`."""
    root = Path(root)
    _check_export(root, option)
    manifest = json.loads((root / MANIFEST).read_text())
    if manifest.get("kind") == "table":
        raise UserError(f"{option}={root} is a table export: this command reads image exports.")
    sources = None
    if (root / ARRAYS).is_file():
        with np.load(root / ARRAYS) as arrays:
            images, labels = arrays["images"], arrays["labels"]
            if "sources" in arrays.files:
                sources = [str(s) for s in arrays["sources"]]
    else:
        with open(root / METADATA, newline="") as handle:
            rows = list(csv.DictReader(handle))
        images = np.stack([_read_png(root / row["file_name"]) for row in rows])
        labels = np.array([int(row["label"]) for row in rows], dtype=np.int64)
        if rows and "source" in rows[0]:
            sources = [row["source"] for row in rows]
    return ExportedDataset(
        torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
        torch.from_numpy(labels),
        manifest,
        sources,
    )


@dataclass
class ExportedTable:
    frame: Any  # pandas.DataFrame: the exported rows, the real table's columns (no source column)
    manifest: dict[str, Any]
    sources: list[str] | None = None  # "synthetic" | "real" per row (fills), else None

    def only(self, source: str) -> Any:
        """The rows of one source (all of them for exports without a source column)."""
        if self.sources is None:
            return self.frame if source == "synthetic" else self.frame.iloc[:0]
        keep = np.array([s == source for s in self.sources], dtype=bool)
        return self.frame[keep].reset_index(drop=True)


def is_table_export(root: Path) -> bool:
    """True when ``root`` holds a table export (its manifest says ``kind: table``)."""
    try:
        return json.loads((Path(root) / MANIFEST).read_text()).get("kind") == "table"
    except (OSError, json.JSONDecodeError):
        return False


def read_table_export(root: Path, option: str = "synthetic") -> ExportedTable:
    """Verifies a table export, then loads ``data.parquet`` (the dtypes kept); a broken one is a :class:`UserError`."""
    import pandas as pd  # tables only

    root = Path(root)
    _check_export(root, option)
    manifest = json.loads((root / MANIFEST).read_text())
    frame = pd.read_parquet(root / "data.parquet")
    sources = None
    if "source" in frame.columns:
        sources = frame.pop("source").astype(str).tolist()
    return ExportedTable(frame, manifest, sources)


def _check_export(root: Path, option: str) -> None:
    """``option``: the command's key that named ``root`` (``synthetic``, ``export_dir``), for the message."""
    if not root.is_dir():
        raise UserError(f"{option}={root} is not a directory: pass the out_dir of `src.generate`.")
    problems = verify_dataset(root)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise UserError(
            f"{option}={root} fails verification ({shown}): export it again or restore the files."
        )


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array
