"""Writes a synthetic table as a dataset directory, complete or absent (see :mod:`src.export.writer`).

Layout::

    out_dir/data.csv          the rows, with the real table's columns (missing values empty)
    out_dir/data.parquet      the same rows with their dtypes (integers, nullable integers, strings)
    out_dir/manifest.json     provenance, columns, class counts, scores with their protocol
    out_dir/README.md         dataset card (Hugging Face format)
    out_dir/SHA256SUMS        sha256 of every other file

pandas (``read_csv`` / ``read_parquet``) and Hugging Face ``datasets`` (the ``csv`` and ``parquet``
builders) load both files. Exports that mix real and generated rows (gap filling) have one more
column, ``source`` (``real`` | ``synthetic``), as the image exports' ``metadata.csv`` does.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from src.export.writer import SOURCES, DatasetDirectoryWriter
from src.utils.tables import TableSchema

CSV = "data.csv"
PARQUET = "data.parquet"
SOURCE_COLUMN = "source"


class TableDatasetWriter(DatasetDirectoryWriter):
    """Collects decoded rows (``add``) and publishes ``data.csv`` + ``data.parquet`` with the manifest.

    Args:
        out_dir: the final directory.
        schema: the table's schema (column order, class names of the target).
        with_source: add the ``source`` column (exports holding real rows too).
    """

    def __init__(self, out_dir: Path, schema: TableSchema, with_source: bool = False) -> None:
        super().__init__(out_dir)
        self.schema = schema
        self.with_source = with_source
        self._frames: list[pd.DataFrame] = []
        # Per source: rows per class of the target (one bucket without a target).
        self.source_counts: dict[str, list[int]] = {}

    def __enter__(self) -> TableDatasetWriter:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()

    @property
    def count(self) -> int:
        return sum(len(frame) for frame in self._frames)

    def add(self, frame: pd.DataFrame, source: str = "synthetic") -> None:
        """Decoded rows (the schema's columns) from one source."""
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        frame = frame[self.schema.names].reset_index(drop=True)
        counts = self.source_counts.setdefault(source, [0] * max(1, self.schema.num_classes))
        for index, n in enumerate(self.class_counts_of(frame)):
            counts[index] += n
        if self.with_source:
            frame = frame.assign(**{SOURCE_COLUMN: source})
        self._frames.append(frame)

    def class_counts_of(self, frame: pd.DataFrame) -> list[int]:
        """Rows per class of the target (in ``schema.class_names`` order); [rows] without a target."""
        if self.schema.target is None:
            return [len(frame)]
        target = self.schema.encode_column(self.schema.target, frame[self.schema.target]).astype(int)
        return [int((target == c).sum()) for c in range(self.schema.num_classes)]

    def frame(self) -> pd.DataFrame:
        if not self._frames:
            return pd.DataFrame(columns=self.schema.names)
        return pd.concat(self._frames, ignore_index=True)

    def sources_summary(self) -> dict[str, dict[str, Any]]:
        return {source: {"n": int(sum(c)), "per_class": list(c)} for source, c in self.source_counts.items()}

    def finish(self, manifest: dict[str, Any]) -> Path:
        frame = self.frame()
        self._write(CSV, frame.to_csv(index=False).encode())
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self._write(PARQUET, buffer.getvalue())
        return self.publish(manifest)
