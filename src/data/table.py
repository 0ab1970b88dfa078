"""Tables: a CSV or Parquet file (``data=table``) and the bundled tables built on the same module.

The rows are served in the raw layout of :mod:`src.utils.tables`: ``x`` is a float32 tensor
``(N, D)`` with one entry per column in the schema's order (a continuous value, ``NaN`` when
missing; a discrete column's category code, the code after the categories when missing), ``y`` is
the target's code (zeros without a target). Missing values stay in the rows: the schema gives each
discrete column a "missing" state and continuous columns keep ``NaN``, so models learn where values
are absent instead of training on a table with those rows dropped.

The file is read once, when the spec is resolved (before any model is built), so a table that
cannot be used stops with one ``Error:`` line naming the option to change, and ``num_classes`` and
``point_dim`` reach the model config. Splits: ``val_fraction`` / ``test_fraction`` of the rows,
drawn by ``split_seed`` (:func:`src.utils.tables.split_rows`); ``data.subset`` cuts the train
split per target class.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from src.data.base import SPLITS, GenerativeDataModule
from src.utils.errors import UserError
from src.utils.logging import get_logger
from src.utils.tables import TableSchema, split_rows
from src.utils.types import Fraction, NonNegativeInt, PositiveInt

log = get_logger(__name__)

CSV_SUFFIXES = (".csv", ".txt")
TSV_SUFFIXES = (".tsv", ".tab")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
COMPRESSIONS = (".gz", ".bz2", ".zip", ".xz", ".zst")
PARQUET_MAGIC = b"PAR1"
# A target with more classes than this is more likely a continuous column named by mistake.
MANY_CLASSES = 100


class TableDataModule(GenerativeDataModule):
    """Rows of a CSV or Parquet file (``data=table``), in the raw layout of :class:`TableSchema`.

    Attributes (beside the base class's): ``schema`` (the :class:`TableSchema`, read from the
    whole table), ``point_dim`` (number of columns), ``num_classes`` / ``class_names`` (the
    target's categories; 0 / [] without a target), ``frame(split)`` (the split's rows as a
    ``DataFrame`` with the table's columns, dtypes and category values).

    Subclasses that bring their own table (the bundled ones) override :meth:`_read_frame` and
    set ``name``; ``path`` is then not an option of theirs.
    """

    name = "table"
    kind = "table"
    pixel_range: ClassVar[tuple[float, float]] = (-math.inf, math.inf)
    takes_path: ClassVar[bool] = True

    def __init__(
        self,
        *,
        path: str | None = None,
        target: str | None = None,
        discrete_columns: list[str] | None = None,
        drop_columns: list[str] | None = None,
        na_values: list[str] | None = None,
        val_fraction: Fraction = 0.1,
        test_fraction: Fraction = 0.2,
        num_classes: NonNegativeInt | None = None,
        point_dim: PositiveInt | None = None,
        image_size: None = None,
        channels: None = None,
        **kwargs: Any,
    ) -> None:
        if self.takes_path and path is None:
            raise UserError(f"data={self.name} needs a file: set data.path=/path/to/table.csv (or .parquet).")
        if not self.takes_path and path is not None:
            raise UserError(
                f"data={self.name} reads its own table: remove data.path (data=table reads a file of yours)."
            )
        if val_fraction + test_fraction >= 1:
            raise UserError(
                f"data.val_fraction={val_fraction} + data.test_fraction={test_fraction} leave no training rows: "
                "make their sum smaller than 1."
            )
        super().__init__(num_classes=num_classes, image_size=None, channels=None, **kwargs)
        self.path = Path(path).expanduser() if path is not None else None
        self.target = target
        self.discrete_columns = None if discrete_columns is None else [str(c) for c in discrete_columns]
        self.drop_columns = [str(c) for c in drop_columns or []]
        self.na_values = [str(v) for v in na_values or []]
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.point_dim = point_dim
        # Values the config states (not null) are checked against the table once it is read.
        self._stated = {"num_classes": num_classes, "point_dim": point_dim}
        self._schema: TableSchema | None = None
        self._rows: np.ndarray | None = None
        self._frames: dict[str, pd.DataFrame] = {}

    # ----------------------------------------------------------------- the table
    def _read_frame(self) -> pd.DataFrame:
        """The whole table as read from its source (subclasses: their own table)."""
        assert self.path is not None
        return read_table(self.path, option="data.path", na_values=self.na_values)

    @property
    def source_description(self) -> str:
        """Where the table comes from, for messages (the file, or the bundled table's name)."""
        return str(self.path) if self.path is not None else f"the {self.name} table"

    def resolve_spec(self) -> None:
        """Reads the table and learns its schema, classes and width (no training data moved yet)."""
        self._read()
        super().resolve_spec()

    @property
    def schema(self) -> TableSchema:
        """The table's :class:`TableSchema` (read on first use)."""
        if self._schema is None:
            self._read()
        assert self._schema is not None
        return self._schema

    def _read(self) -> None:
        if self._schema is not None:
            return
        frame = self._read_frame()
        frame = self._prepare(frame)
        schema = TableSchema.infer(frame, self.target, self.discrete_columns, name=self.name)
        self._check_schema(schema, frame)
        self._rows = schema.encode(frame)
        self._schema = schema
        self.class_names = schema.class_names
        self.num_classes = schema.num_classes
        self.point_dim = len(schema)
        if self.data_source is None:
            self.data_source = "files" if self.path is not None else "bundled"

    def _prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Column names as strings, the dropped columns gone, the named columns checked."""
        frame = frame.copy()
        frame.columns = [str(c) for c in frame.columns]
        duplicated = sorted(name for name, times in Counter(frame.columns).items() if times > 1)
        if duplicated:
            raise UserError(
                f"data={self.name}: {self.source_description} has several columns named {', '.join(duplicated)}: "
                "rename them so that every column has its own name."
            )
        columns = ", ".join(frame.columns)
        unknown = [c for c in self.drop_columns if c not in frame.columns]
        if unknown:
            raise UserError(
                f"data.drop_columns: {', '.join(map(repr, unknown))} is not a column of {self.source_description}; "
                f"its columns are {columns}."
            )
        frame = frame.drop(columns=self.drop_columns)
        columns = ", ".join(frame.columns)
        if self.target is not None and self.target not in frame.columns:
            raise UserError(
                f"data.target={self.target!r} is not a column of {self.source_description}: use one of {columns} "
                "(or data.target=null for a table without a target)."
            )
        unknown = [c for c in self.discrete_columns or [] if c not in frame.columns]
        if unknown:
            raise UserError(
                f"data.discrete_columns: {', '.join(map(repr, unknown))} is not a column of "
                f"{self.source_description}: list columns among {columns}."
            )
        if frame.shape[1] == 0:
            raise UserError(f"data={self.name}: {self.source_description} has no columns: give it a table.")
        return frame.reset_index(drop=True)

    def _check_schema(self, schema: TableSchema, frame: pd.DataFrame) -> None:
        n = len(frame)
        smallest = _fewest_rows(self.val_fraction, self.test_fraction)
        if n < smallest:
            raise UserError(
                f"data={self.name}: {self.source_description} has {n} row(s), too few for train, val and test splits "
                f"(data.val_fraction={self.val_fraction}, data.test_fraction={self.test_fraction}): use a table "
                f"of at least {smallest} rows."
            )
        if self.target is not None:
            classes = schema.class_names
            if len(classes) < 2:
                raise UserError(
                    f"data.target={self.target!r} has one class only ({classes[0]!r}) in {self.source_description}: "
                    "choose a target column with at least two values, or data.target=null."
                )
            if len(classes) > MANY_CLASSES:
                log.warning(
                    f"data.target={self.target!r} has {len(classes)} classes: if it is a measurement, not a label, "
                    "set data.target=null or to a categorical column."
                )
        for key, stated in self._stated.items():
            actual = schema.num_classes if key == "num_classes" else len(schema)
            if stated is not None and stated != actual:
                raise UserError(
                    f"data.{key}={stated} but {self.source_description} gives {actual}: remove data.{key} "
                    "(it is read from the table)."
                )
        n_train = n - round(n * self.val_fraction) - round(n * self.test_fraction)
        if self.subset is None and n_train < self.batch_size:
            raise UserError(
                f"data={self.name}: the train split has {n_train} rows, fewer than data.batch_size="
                f"{self.batch_size}: lower data.batch_size."
            )
        for column in schema.columns:
            identifier = column.kind == "discrete" or column.integer
            if identifier and column.name != self.target and n > 20 and frame[column.name].nunique() == n:
                log.warning(
                    f"data={self.name}: column {column.name!r} has a different value in every row (an identifier?); "
                    f"models cannot learn it and may copy it: consider data.drop_columns=[{column.name}]."
                )

    # ----------------------------------------------------------------- splits
    def _load(self) -> dict[str, tuple[Tensor, Tensor]]:
        self._read()
        assert self._rows is not None and self._schema is not None
        rows = torch.from_numpy(self._rows)
        target = self._schema.target_index
        labels = rows[:, target].long() if target is not None else torch.zeros(len(rows), dtype=torch.long)
        parts = split_rows(len(rows), [self.val_fraction, self.test_fraction], self.split_seed)
        return {
            name: (rows[torch.from_numpy(idx)], labels[torch.from_numpy(idx)])
            for name, idx in zip(SPLITS, parts)
        }

    def setup(self, stage: str | None = None) -> None:
        loaded = self._splits is not None
        super().setup(stage)
        if not loaded:
            self._frames.clear()

    def frame(self, split: str) -> pd.DataFrame:
        """The rows of a split (after ``data.subset`` for train), decoded: the table's columns,
        dtypes and category values, ``NaN``/``None`` where values are missing."""
        if split not in self._frames:
            self._frames[split] = self.schema.decode(self.split(split)[0])
        return self._frames[split].copy()

    # ----------------------------------------------------------------- records
    def describe(self) -> dict[str, Any]:
        described = super().describe()
        described["point_dim"] = self.point_dim
        if self.path is not None:
            described["path"] = str(self.path)
        described["target"] = self.target
        if self._schema is not None:
            described["n_rows"] = len(self._rows) if self._rows is not None else None
            described["columns"] = {c.name: c.kind for c in self._schema.columns}
            described["missing_columns"] = [c.name for c in self._schema.columns if c.missing]
            described["schema"] = self._schema.to_dict()
        return described


# ---------------------------------------------------------------------- files
def read_table(path: Path | str, option: str = "data.path", na_values: Sequence[str] = ()) -> pd.DataFrame:
    """A CSV (``.csv``, ``.tsv``, compressed or not) or Parquet file as a ``DataFrame``.

    Anything else, or a file that does not parse, stops with a :class:`UserError` naming ``option``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{option}={path} does not exist: point {option} at a CSV or Parquet file.")
    kind = _table_kind(path)
    if kind is None:
        raise UserError(
            f"{option}={path} is not a CSV or Parquet file (by its name and content): give a .csv, .tsv or "
            ".parquet file, or convert the table to one of them."
        )
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(
                path,
                sep="\t" if kind == "tsv" else ",",
                na_values=list(na_values) or None,
                skipinitialspace=True,
                low_memory=False,
            )
    except pd.errors.EmptyDataError:
        raise UserError(f"{option}={path} is empty: give a table with a header row and data rows.") from None
    except Exception as exc:  # parsers raise many types (ParserError, UnicodeDecodeError, ArrowInvalid...)
        reason = " ".join(str(exc).split())[:200]
        raise UserError(
            f"{option}={path} cannot be read as a {'Parquet' if kind == 'parquet' else 'CSV'} table "
            f"({type(exc).__name__}: {reason}): fix or replace the file."
        ) from None
    # Parquet categoricals decode as their values; one dtype per value kind keeps schemas simple.
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(object)
    return frame


def _table_kind(path: Path) -> str | None:
    """``csv``, ``tsv`` or ``parquet`` from the name (a compression suffix aside) and the first bytes."""
    if path.is_dir():
        return "parquet"  # a partitioned Parquet dataset; pandas reads the folder
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise UserError(f"data.path={path} cannot be opened ({exc}): check its permissions.") from None
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
        compressed = True
    else:
        compressed = False
    suffix = suffixes[-1] if suffixes else ""
    if suffix in PARQUET_SUFFIXES:
        return "parquet"  # without the magic number it fails to parse, with that message
    if suffix in CSV_SUFFIXES + TSV_SUFFIXES:
        if not compressed and b"\x00" in head:
            return None  # binary content under a text name
        return "tsv" if suffix in TSV_SUFFIXES else "csv"
    return None


def _fewest_rows(val_fraction: float, test_fraction: float, limit: int = 100_000) -> int:
    """The smallest table whose train, val and test splits each get a row."""
    for n in range(3, limit):
        val, test = round(n * val_fraction), round(n * test_fraction)
        if val >= 1 and test >= 1 and n - val - test >= 1:
            return n
    return limit
