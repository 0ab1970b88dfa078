"""UCI Adult (census income, Kohavi 1996): 48,842 rows, 14 attributes and the target ``income``.

Files: ``<data_dir>/adult/adult.data`` (32,561 rows) and ``adult.test`` (16,281 rows), as the UCI
archive publishes them (comma-separated, no header, ``?`` for a missing value; ``adult.test`` opens
with a ``|1x3 Cross validator`` line and writes its labels with a trailing ``.``). The two files are
read as one table and split like every table (``val_fraction`` / ``test_fraction`` by
``split_seed``), not by the publishers' 2/3 - 1/3 cut. Without the files, ``data.source=auto``
downloads them; offline the run stops with one ``Error:`` line naming the folder.
"""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path
from typing import ClassVar

import pandas as pd

from src.data.base import GenerativeDataModule
from src.data.downloadable import DownloadableDataModule
from src.data.table import TableDataModule

URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
LABELS = frozenset({"<=50K", ">50K"})
# The published files, for the download's check (a user's own copy may differ).
PUBLISHED_ROWS = {"adult.data": 32_561, "adult.test": 16_281}
DOWNLOAD_TIMEOUT_S = 60


class AdultDataModule(TableDataModule, DownloadableDataModule):
    """UCI Adult: predict ``income`` (``<=50K`` / ``>50K``) from census attributes; mixed types with
    missing values in ``workclass``, ``occupation`` and ``native-country``."""

    name = "adult"
    takes_path = False
    folder = "adult"
    expected_files: ClassVar[tuple[str, ...]] = ("adult.data", "adult.test")

    def __init__(self, *, target: str | None = "income", **kwargs) -> None:
        super().__init__(target=target, **kwargs)

    @property
    def source_description(self) -> str:
        return f"the adult table ({self.root})"

    def resolve_spec(self) -> None:
        """Reads the files when they are here; otherwise the spec comes from the published table
        (they are downloaded later, in ``prepare_data``, once every config check has passed)."""
        if not self.missing_files():
            super().resolve_spec()
            return
        if self.num_classes is None and self.target in ("income", None):
            self.num_classes = 0 if self.target is None else len(LABELS)
        if self.point_dim is None:
            self.point_dim = len(COLUMNS) - len(self.drop_columns)
        GenerativeDataModule.resolve_spec(self)

    def _read_frame(self) -> pd.DataFrame:
        if self.data_source is None:
            self.data_source = self._resolve(download=False)
        parts = [self._read_file(self.root / name) for name in self.expected_files]
        return pd.concat(parts, ignore_index=True)

    def _read_file(self, path: Path) -> pd.DataFrame:
        try:
            return parse_adult(path.read_bytes())
        except Exception as exc:
            raise self._unreadable(path, exc) from None

    def _download(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for name in self.expected_files:
            with urllib.request.urlopen(URL + name, timeout=DOWNLOAD_TIMEOUT_S) as response:
                content = response.read()
            rows = len(parse_adult(content))
            if rows != PUBLISHED_ROWS[name]:
                raise ValueError(f"{name} has {rows} rows, the published file {PUBLISHED_ROWS[name]}")
            # Written under a temporary name and renamed: an interrupted download leaves no file
            # that would pass for a complete one.
            partial = self.root / f"{name}.part"
            partial.write_bytes(content)
            partial.replace(self.root / name)


def parse_adult(content: bytes) -> pd.DataFrame:
    """One of the published files (``adult.data`` or ``adult.test``) as a ``DataFrame``."""
    text = content.decode("utf-8")
    lines = text.splitlines()
    # adult.test starts with a line that is not a record ("|1x3 Cross validator").
    skip = 1 if lines and lines[0].startswith("|") else 0
    frame = pd.read_csv(
        io.StringIO(text),
        header=None,
        names=list(COLUMNS),
        skiprows=skip,
        skipinitialspace=True,
        na_values=["?"],
        keep_default_na=False,
    )
    if frame.empty:
        raise ValueError("no records")
    frame["income"] = frame["income"].astype(str).str.rstrip(".")
    unknown = sorted(set(frame["income"]) - LABELS)
    if unknown:
        raise ValueError(f"income values {unknown[:3]} are not {sorted(LABELS)}: not an Adult file")
    if frame[["age", "fnlwgt", "hours-per-week"]].isna().any().any():
        raise ValueError("records with fewer than 15 fields")
    return frame
