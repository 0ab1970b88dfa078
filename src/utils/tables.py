"""What a table's columns are, and how its rows travel through the framework as tensors.

Every tabular part (data modules, models, scores, exports) agrees on one *raw layout*: a row is a
float vector with one entry per column, in the schema's column order.

* a **continuous** column holds its value; a missing value is ``NaN``;
* a **discrete** column holds the code of its category (``0 .. len(categories) - 1``) as a float;
  when the column has missing values, code ``len(categories)`` is the "missing" state, a category
  of its own that models learn like any other.

:class:`TableSchema` turns a ``pandas.DataFrame`` into that layout (:meth:`TableSchema.encode`) and
back, with the original column names, dtypes and category values (:meth:`TableSchema.decode`). It
is plain data (:meth:`TableSchema.to_dict`), so checkpoints and export manifests carry it.

The category sets and ranges are read from the whole table (every split), like a metadata file of
SDV: they describe the table's domain, not its training rows. A model trained with ``privacy=dp``
therefore does not cover them (README, "Privacy").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from src.utils.errors import UserError
from src.utils.logging import get_logger

log = get_logger(__name__)

ColumnKind = Literal["continuous", "discrete"]
# An integer column with at most this many distinct values is taken as discrete when the user
# does not list the discrete columns (0/1 flags, ratings, counts of a few values).
MAX_INTEGER_CATEGORIES = 10


@dataclass(frozen=True)
class Column:
    """One column: its kind, the values it can take and how to write it back.

    Attributes:
        name: the column's name in the table.
        kind: ``continuous`` (a number) or ``discrete`` (one of ``categories``).
        dtype: the pandas dtype the decoded column gets (``int64``, ``float64``, ``bool``, ``object``...).
        categories: discrete columns: the values, in code order (JSON-able: str, int, float, bool).
        missing: the table has missing values in this column (a discrete column then has one more code).
        integer: continuous values that are whole numbers; decoded values are rounded.
        low, high: continuous columns: the observed range; decoded values are clipped to it.
        decimals: continuous columns: the most decimals the values have (at most 6); decoded
            values are rounded to them, so float32 rows write back as the table wrote them.
    """

    name: str
    kind: ColumnKind
    dtype: str = "float64"
    categories: tuple[Any, ...] = ()
    missing: bool = False
    integer: bool = False
    low: float | None = None
    high: float | None = None
    decimals: int | None = None

    @property
    def n_codes(self) -> int:
        """Codes of a discrete column: its categories, plus the missing state when there is one."""
        return len(self.categories) + int(self.missing)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "categories": list(self.categories),
            "missing": self.missing,
            "integer": self.integer,
            "low": self.low,
            "high": self.high,
            "decimals": self.decimals,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Column:
        return cls(**{**d, "categories": tuple(d.get("categories", ()))})


@dataclass(frozen=True)
class TableSchema:
    """The columns of a table, in the order of the raw layout, and its target column (or none)."""

    columns: tuple[Column, ...]
    target: str | None = None
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {c.name: i for i, c in enumerate(self.columns)})
        if self.target is not None:
            if self.target not in self._index:
                raise UserError(f"the target column {self.target!r} is not a column of the table.")
            if self.columns[self._index[self.target]].kind != "discrete":
                raise ValueError(f"the target column {self.target!r} must be discrete")

    # ------------------------------------------------------------------ facts
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __len__(self) -> int:
        return len(self.columns)

    def column(self, name: str) -> Column:
        return self.columns[self._index[name]]

    def index(self, name: str) -> int:
        return self._index[name]

    @property
    def discrete_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c.kind == "discrete"]

    @property
    def continuous_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c.kind == "continuous"]

    @property
    def target_index(self) -> int | None:
        return None if self.target is None else self._index[self.target]

    @property
    def class_names(self) -> list[str]:
        """The target's categories as strings (the class names of a labelled table); [] without a target."""
        if self.target is None:
            return []
        column = self.column(self.target)
        names = [str(v) for v in column.categories]
        return [*names, "<missing>"] if column.missing else names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ------------------------------------------------------------------ inference
    @classmethod
    def infer(
        cls,
        frame: pd.DataFrame,
        target: str | None = None,
        discrete_columns: Iterable[str] | None = None,
        name: str = "table",
    ) -> TableSchema:
        """The schema of ``frame``; the kinds are inferred unless ``discrete_columns`` lists them.

        Inferred as discrete: non-numeric and boolean columns, and integer-valued columns with at
        most :data:`MAX_INTEGER_CATEGORIES` distinct values. The target (when given) is always
        discrete. Stops with a :class:`UserError` on an unknown column name or an all-empty column.
        """
        unknown = [c for c in [target, *(discrete_columns or [])] if c is not None and c not in frame.columns]
        if unknown:
            raise UserError(
                f"data={name}: no column named {', '.join(map(repr, unknown))} in the table; its columns are "
                f"{', '.join(map(str, frame.columns))}."
            )
        empty = [str(c) for c in frame.columns if frame[c].isna().all()]
        if empty:
            raise UserError(
                f"data={name}: column(s) {', '.join(empty)} are entirely empty: drop them from the table."
            )
        listed = None if discrete_columns is None else set(discrete_columns)
        columns = []
        for column_name in frame.columns:
            series = frame[column_name]
            numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
            if column_name == target or not numeric:
                discrete = True
            elif listed is not None:
                discrete = column_name in listed
            else:
                discrete = _whole_numbers(series) and series.nunique(dropna=True) <= MAX_INTEGER_CATEGORIES
            columns.append(_describe_column(str(column_name), series, discrete))
        schema = cls(tuple(columns), target)
        kinds = ", ".join(f"{c.name}:{'d' if c.kind == 'discrete' else 'c'}" for c in columns)
        log.info(f"data={name}: columns (d = discrete, c = continuous): {kinds}")
        return schema

    # ------------------------------------------------------------------ layout
    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows of ``frame`` (the schema's columns, any order) -> float32 array ``(N, len(self))``.

        A category that the schema does not know stops with a :class:`UserError`.
        """
        missing = [c for c in self.names if c not in frame.columns]
        if missing:
            raise UserError(f"the table lacks column(s) {', '.join(missing)} of the schema.")
        out = np.empty((len(frame), len(self)), dtype=np.float32)
        for i, column in enumerate(self.columns):
            out[:, i] = self.encode_column(column.name, frame[column.name])
        return out

    def encode_column(self, name: str, series: pd.Series) -> np.ndarray:
        """One column's raw-layout values (float64): the number, or the category code."""
        column = self.column(name)
        if column.kind == "continuous":
            return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        lookup = {_key(v): code for code, v in enumerate(column.categories)}
        codes = np.empty(len(series), dtype=np.float64)
        for j, value in enumerate(series.tolist()):
            if _is_missing(value):
                if not column.missing:
                    raise UserError(
                        f"column {column.name}: a missing value, which the table's schema has not seen."
                    )
                codes[j] = len(column.categories)
                continue
            code = lookup.get(_key(value))
            if code is None:
                raise UserError(f"column {column.name}: value {value!r} is not one of its categories.")
            codes[j] = code
        return codes

    def decode(self, rows: np.ndarray | Any) -> pd.DataFrame:
        """Raw-layout rows -> a ``DataFrame`` with the table's columns, dtypes and category values.

        Codes are rounded and clipped to the column's codes; continuous values are clipped to the
        observed range and rounded for integer columns. ``NaN`` stays missing.
        """
        rows = np.asarray(rows.detach().cpu() if hasattr(rows, "detach") else rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self):
            raise ValueError(f"expected rows of {len(self)} columns, got shape {rows.shape}")
        data: dict[str, Any] = {}
        for i, column in enumerate(self.columns):
            values = rows[:, i]
            if column.kind == "discrete":
                codes = np.clip(
                    np.nan_to_num(np.rint(values), nan=column.n_codes - 1), 0, column.n_codes - 1
                ).astype(int)
                table = [*column.categories, None] if column.missing else list(column.categories)
                decoded = pd.Series([table[c] for c in codes], dtype=object)
                data[column.name] = _restore(decoded, column.dtype, column.missing)
                continue
            values = values.copy()
            if column.low is not None and column.high is not None:
                values = np.clip(values, column.low, column.high)
            if column.integer:
                values = np.rint(values)
            elif column.decimals is not None:
                values = np.round(values, column.decimals)
            series = pd.Series(values)
            if column.integer and not np.isnan(values).any():
                series = series.astype(column.dtype if column.dtype.startswith(("int", "uint")) else "int64")
            data[column.name] = series
        return pd.DataFrame(data, columns=self.names)

    # ------------------------------------------------------------------ records
    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableSchema:
        return cls(tuple(Column.from_dict(c) for c in d["columns"]), d.get("target"))


# ---------------------------------------------------------------------- helpers
def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _key(value: Any) -> Any:
    """A lookup key equal for a value and its JSON round trip (numpy scalars -> Python)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _whole_numbers(series: pd.Series) -> bool:
    values = pd.to_numeric(series, errors="coerce").dropna().to_numpy(dtype=np.float64)
    return bool(len(values)) and bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def _describe_column(name: str, series: pd.Series, discrete: bool) -> Column:
    dtype = str(series.dtype)
    missing = bool(series.isna().any())
    if discrete:
        values = [_native(v) for v in pd.unique(series.dropna())]
        try:
            values = sorted(values)
        except TypeError:  # mixed types: order by their text
            values = sorted(values, key=str)
        if dtype.startswith(("string", "str", "category")):
            dtype = "object"
        return Column(name, "discrete", dtype=dtype, categories=tuple(values), missing=missing)
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    finite = numbers[np.isfinite(numbers)]
    return Column(
        name,
        "continuous",
        dtype=dtype,
        missing=missing,
        integer=_whole_numbers(series),
        low=float(finite.min()),
        high=float(finite.max()),
        decimals=_decimals(finite),
    )


def _decimals(values: np.ndarray, most: int = 6) -> int | None:
    """The fewest decimals that write every value exactly (None: more than ``most``)."""
    for decimals in range(most + 1):
        if np.allclose(
            np.round(values, decimals),
            values,
            rtol=0,
            atol=1e-9 * max(1.0, float(np.abs(values).max(initial=0))),
        ):
            return decimals
    return None


def _restore(series: pd.Series, dtype: str, missing: bool) -> pd.Series:
    """Decoded category values back in the column's dtype (a nullable one when values are missing)."""
    try:
        if dtype == "bool":
            return series.astype("boolean" if missing else bool)
        if dtype.startswith(("int", "uint", "Int", "UInt")):
            return series.astype("Int64" if missing else dtype)
        if dtype.startswith("float"):
            return series.astype(dtype)
    except (TypeError, ValueError):
        pass
    return series


def split_rows(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Row indices of a deterministic random split into ``len(fractions) + 1`` parts (the rest first)."""
    order = np.random.default_rng(seed).permutation(n)
    sizes = [round(n * f) for f in fractions]
    bounds = np.cumsum([0, n - sum(sizes), *sizes])
    return [order[a:b] for a, b in itertools.pairwise(bounds)]
