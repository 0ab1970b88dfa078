"""Writes a synthetic dataset directory that is either complete or absent.

Everything is written into a hidden temporary sibling (``.<name>.partial-<pid>``) and renamed to
``out_dir`` at the very end; an interrupted export leaves no directory that looks complete.

Layout::

    out_dir/images/<NN_class>/<index>.png   torchvision ImageFolder
    out_dir/metadata.csv                    file_name,label,source (Hugging Face imagefolder)
    out_dir/data.npz                        images uint8 (N, H, W, C), labels int64, sources, class_names
    out_dir/manifest.json                   provenance, class counts, scores with their protocol
    out_dir/README.md                       dataset card (Hugging Face format; src/export/card.py)
    out_dir/SHA256SUMS                      sha256 of every other file (`sha256sum -c` format)

Table exports (:mod:`src.export.table_writer`) share the manifest, card and checksums and hold
``data.csv`` + ``data.parquet`` instead of images.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.export.card import CARD, dataset_card
from src.export.labels import class_folders
from src.export.png import write_pngs
from src.utils.errors import UserError

CHECKSUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
METADATA = "metadata.csv"
ARRAYS = "data.npz"
FORMAT_VERSION = 1
# Where an image came from: generated, copied from the real training split (gap filling), or a
# real image whose missing pixels were filled (src.inpaint).
SOURCES = ("synthetic", "real", "inpainted")


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuses a non-empty ``out_dir`` unless ``overwrite=true``; call before any work."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"out_dir={out_dir} is a file: choose a directory path.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(
            f"out_dir={out_dir} is not empty: choose a new out_dir, or set overwrite=true to replace it."
        )


class DatasetDirectoryWriter:
    """A dataset directory that is either complete or absent: files go to a hidden temporary
    sibling (``.<name>.partial-<pid>``), listed in ``SHA256SUMS`` as they are written, and
    :meth:`publish` renames the directory into place once the manifest and the card are in. The
    image export (:class:`SyntheticDatasetWriter`) and the table export build on it."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.tmp = self.out_dir.parent / f".{self.out_dir.name}.partial-{os.getpid()}"
        self.checksums: dict[str, str] = {}

    def open(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def add_file(self, relpath: str, data: bytes) -> None:
        """An extra file of the dataset (e.g. the masks of src.inpaint), listed in ``SHA256SUMS``."""
        (self.tmp / relpath).parent.mkdir(parents=True, exist_ok=True)
        self._write(relpath, data)

    def _write(self, relpath: str, data: bytes) -> None:
        (self.tmp / relpath).write_bytes(data)
        self.checksums[relpath] = hashlib.sha256(data).hexdigest()

    def publish(self, manifest: dict[str, Any]) -> Path:
        """Writes the manifest, the card and the checksums, then moves the directory into place."""
        manifest = {"format_version": FORMAT_VERSION, **manifest}
        self._write(MANIFEST, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
        self._write(CARD, dataset_card(manifest).encode())
        lines = [f"{digest}  {path}\n" for path, digest in sorted(self.checksums.items())]
        (self.tmp / CHECKSUMS).write_text("".join(lines))
        if self.out_dir.exists():
            # overwrite=true was checked up front: swap the old directory out, then delete it.
            trash = self.out_dir.parent / f".{self.out_dir.name}.replaced-{os.getpid()}"
            os.replace(self.out_dir, trash)
            os.replace(self.tmp, self.out_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.tmp, self.out_dir)
        return self.out_dir


class SyntheticDatasetWriter(DatasetDirectoryWriter):
    """Accumulates batches of images and labels, then publishes the directory atomically.

    Args:
        out_dir: the final directory.
        class_names: names of the label values (folder names are derived from them).
        png, npz: which formats to write.
        workers: threads encoding PNGs in parallel (0: in the calling thread). Pillow releases the
            GIL while it compresses, so threads scale without the start-up cost of processes.
            While they run, torch's CPU generation keeps the other cores (at least one): OpenMP
            threads spin between operations, and on oversubscribed cores that spinning takes the
            encoders' time (2 cores, 20k MNIST images: ~4,700 -> ~5,600 images/s, see
            experiments/benchmarks/README.md).
    """

    def __init__(
        self, out_dir: Path, class_names: Sequence[str], png: bool, npz: bool, workers: int, n_total: int
    ) -> None:
        super().__init__(out_dir)
        self.class_names = list(class_names)
        self.folders = class_folders(self.class_names)
        self.png = png
        self.npz = npz
        self.workers = workers
        self.width = max(6, len(str(max(n_total - 1, 0))))
        self.count = 0
        self.class_counts = np.zeros(len(self.class_names), dtype=np.int64)
        # Per source: images per class (manifest "sources").
        self.source_counts: dict[str, np.ndarray] = {}
        self.rows: list[tuple[str, int, str]] = []
        self._arrays: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._sources: list[str] = []
        self._pending: list[Future] = []
        self._pool: ThreadPoolExecutor | None = None
        self._torch_threads: int | None = None

    def __enter__(self) -> SyntheticDatasetWriter:
        self.open()
        if self.png:
            for folder in self.folders:
                (self.tmp / "images" / folder).mkdir(parents=True)
            if self.workers > 0:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="png")
                self._torch_threads = torch.get_num_threads()
                torch.set_num_threads(max(1, self._torch_threads - self.workers))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._pool is not None:
            # Wait even on failure: a PNG still being written after the rmtree below would leave
            # a half-filled temporary directory behind.
            self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)
            torch.set_num_threads(self._torch_threads)
        if exc_type is not None:
            self.discard()

    def add(self, images: np.ndarray, labels: np.ndarray, source: str = "synthetic") -> None:
        """``images``: uint8 ``(B, H, W, C)``; ``labels``: int ``(B,)``; ``source``: one of ``SOURCES``."""
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        indices = range(self.count, self.count + len(images))
        self.count += len(images)
        per_class = np.bincount(labels, minlength=len(self.class_names))
        self.class_counts += per_class
        self.source_counts[source] = self.source_counts.get(source, 0) + per_class
        relpaths = [
            f"images/{self.folders[int(label)]}/{index:0{self.width}d}.png"
            for index, label in zip(indices, labels)
        ]
        self.rows.extend((path, int(label), source) for path, label in zip(relpaths, labels))
        self._sources.extend([source] * len(images))
        if self.npz:
            self._arrays.append(images)
            self._labels.append(labels.astype(np.int64))
        if not self.png:
            return
        if self._pool is None:
            self.checksums.update(write_pngs(str(self.tmp), relpaths, images))
            return
        # Bounded queue: at most two batches per worker in flight keeps memory flat.
        self._pending.append(self._pool.submit(write_pngs, str(self.tmp), relpaths, images))
        while len(self._pending) > 2 * self.workers:
            self.checksums.update(self._pending.pop(0).result())

    def sources_summary(self) -> dict[str, dict[str, Any]]:
        """The manifest's ``sources``: images per source, in all and per class."""
        return {
            source: {"n": int(counts.sum()), "per_class": [int(c) for c in counts]}
            for source, counts in self.source_counts.items()
        }

    def finish(self, manifest: dict[str, Any]) -> Path:
        """Writes metadata, arrays, manifest and checksums, then moves the directory into place."""
        for future in self._pending:
            self.checksums.update(future.result())
        self._pending = []
        if self.png:
            self._write(METADATA, self._metadata_csv())
        if self.npz:
            self._write(ARRAYS, self._npz_bytes())
        return self.publish(manifest)

    def _metadata_csv(self) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["file_name", "label", "source"])
        writer.writerows(self.rows)
        return buffer.getvalue().encode()

    def _npz_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            images=np.concatenate(self._arrays) if self._arrays else np.zeros((0, 0, 0, 0), np.uint8),
            labels=np.concatenate(self._labels) if self._labels else np.zeros((0,), np.int64),
            sources=np.array(self._sources, dtype=str),
            class_names=np.array(self.class_names, dtype=str),
        )
        return buffer.getvalue()
