"""Table exports: data.csv + data.parquet written back with the table's columns and dtypes, verified,
loadable by pandas and Hugging Face datasets; fills and the per-class gate; the table augmentation
report's arms. A stand-in model draws real training rows (exact, fast), so what is tested is the
export's plumbing, not a generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from src.export.exporter import ExportOptions
from src.export.gate import GateClassifier
from src.export.reader import is_table_export, read_table_export
from src.export.table_export import export_table
from src.export.verify import verify_dataset
from src.metrics.row_classifier import RowClassifier
from src.metrics.table_augmentation import ARMS, table_augmentation_report
from src.utils.errors import UserError
from src.utils.tables import TableSchema, split_rows
from tests.conftest import make_table_csv


class RowSampler(torch.nn.Module):
    """Draws training rows (of the asked class when labels are given): a model that copies."""

    data_kind = "table"
    model_name = "row_sampler"
    num_classes = 0
    uses_ema = False
    privacy_record = None

    def __init__(self, rows: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__()
        self.rows, self.labels = rows, labels
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    def sample(self, n: int, labels=None, generator=None) -> torch.Tensor:
        if labels is None:
            return self.rows[torch.randint(len(self.rows), (n,), generator=generator)]
        out = []
        for label in labels.tolist():
            pool = torch.nonzero(self.labels == label).flatten()
            out.append(self.rows[pool[torch.randint(len(pool), (1,), generator=generator)]])
        return torch.cat(out)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory):
    frame = pd.read_csv(make_table_csv(tmp_path_factory.mktemp("t") / "table.csv"))
    schema = TableSchema.infer(frame, target="label")
    rows = torch.from_numpy(schema.encode(frame))
    labels = rows[:, schema.target_index].long()
    train, test = split_rows(len(frame), [0.3], seed=0)
    return frame, schema, (rows[train], labels[train]), (rows[test], labels[test])


def _options(out_dir: Path, **kwargs) -> ExportOptions:
    return ExportOptions(out_dir=str(out_dir), n=kwargs.pop("n", 300), batch_size=128, **kwargs)


def test_export_writes_the_tables_columns_and_dtypes_and_verifies(table, tmp_path: Path) -> None:
    frame, schema, train, _ = table
    path, manifest = export_table(
        RowSampler(*train), schema, _options(tmp_path / "out"), {}, train_split=train
    )
    assert verify_dataset(path) == []
    csv, parquet = pd.read_csv(path / "data.csv"), pd.read_parquet(path / "data.parquet")
    assert list(csv.columns) == list(parquet.columns) == list(frame.columns)
    assert len(csv) == len(parquet) == manifest["n"] == 300
    # The copied rows are real rows, written back exactly (missing incomes stay missing).
    assert set(map(tuple, parquet.astype(str).values)) <= set(map(tuple, frame.astype(str).values))
    assert parquet["visits"].dtype == frame["visits"].dtype and parquet["city"].isin(frame["city"]).all()
    assert manifest["kind"] == "table" and manifest["label_source"] == "model"
    assert sum(c["count"] for c in manifest["classes"]) == 300
    assert is_table_export(path) and read_table_export(path).frame.shape == (300, 5)
    card = (path / "README.md").read_text()
    assert "300 rows of 5 columns" in card and "tabular-classification" in card


def test_hugging_face_datasets_load_both_files(table, tmp_path: Path) -> None:
    import datasets  # a development dependency (pyproject [dev]): a missing install fails, never skips

    _, schema, train, _ = table
    path, _ = export_table(RowSampler(*train), schema, _options(tmp_path / "hf", n=50), {}, train_split=train)
    for builder, name in (("csv", "data.csv"), ("parquet", "data.parquet")):
        loaded = datasets.load_dataset(
            builder, data_files=str(path / name), cache_dir=str(tmp_path / "cache")
        )
        assert loaded["train"].num_rows == 50 and loaded["train"].column_names == schema.names


def test_verification_names_altered_rows_and_columns(table, tmp_path: Path) -> None:
    _, schema, train, _ = table
    path, _ = export_table(RowSampler(*train), schema, _options(tmp_path / "v", n=40), {}, train_split=train)
    parquet = pd.read_parquet(path / "data.parquet")
    parquet.iloc[:-1].to_parquet(path / "data.parquet", index=False)
    problems = verify_dataset(path)
    assert "altered: data.parquet" in problems
    assert any("data.parquet has 39 rows" in p for p in problems)
    (path / "data.csv").write_text("a,b\n1,2\n")
    assert any("data.csv's columns differ" in p for p in verify_dataset(path))


def test_fill_balances_the_target_beside_the_real_rows(table, tmp_path: Path) -> None:
    _, schema, train, test = table
    classifier = RowClassifier(schema).fit(*train)
    gate = GateClassifier(classifier.probabilities, test, "test", classifier.describe())
    options = _options(tmp_path / "fill", fill="balance")
    path, manifest = export_table(
        RowSampler(*train), schema, options, {}, train_split=train, gate_classifier=gate
    )
    have = torch.bincount(train[1], minlength=2).tolist()
    counts = [c["count"] for c in manifest["classes"]]
    assert counts == [max(have)] * 2 and manifest["fill"]["missing_per_class"] == [
        max(have) - h for h in have
    ]
    written = pd.read_csv(path / "data.csv")
    assert written["source"].value_counts().to_dict() == {
        "real": len(train[0]),
        "synthetic": max(have) - min(have),
    }
    # Real rows copied by the stand-in are judged like any generated row: the gate reports them.
    assert manifest["gate"]["classes"] and verify_dataset(path) == []
    assert read_table_export(path).only("synthetic").shape[0] == max(have) - min(have)


def test_a_refused_gate_writes_nothing(table, tmp_path: Path) -> None:
    _, schema, train, test = table

    def always_other(rows: torch.Tensor) -> torch.Tensor:  # a judge that never agrees
        codes = rows[:, schema.target_index].long()
        return torch.nn.functional.one_hot(1 - codes, 2).float()

    gate = GateClassifier(always_other, test, "test", name="the judge", unit="rows")
    options = _options(tmp_path / "refused", fill={"target": "balance", "gate": "refuse"})
    with pytest.raises(UserError, match="the judge labels fewer than 50% of the generated rows of class"):
        export_table(RowSampler(*train), schema, options, {}, train_split=train, gate_classifier=gate)
    assert not (tmp_path / "refused").exists()
    assert not any(p.name.startswith(".refused") for p in tmp_path.iterdir())


def test_augmentation_report_runs_every_arm_with_balanced_resampling(table) -> None:
    _, schema, train, test = table
    x, y = train[0].numpy(), train[1].numpy()
    report = table_augmentation_report(
        schema, (x, y), (test[0].numpy(), test[1].numpy()), (x[:50], y[:50]), seeds=[0]
    )
    assert list(report["arms"]) == list(ARMS)
    counts = np.bincount(y)
    rows = report["protocol"]["rows_per_arm"]
    assert rows["real"] == len(y) and rows["real+synthetic"] == len(y) + 50
    assert rows["real+oversample"] == rows["real+smote"] == 2 * counts.max()
    assert report["protocol"]["rare_classes"] == ["yes"]
    for scores in report["arms"].values():
        assert 0 <= scores["rare_recall"]["mean"] <= 1 and 0 <= scores["accuracy"]["mean"] <= 1
    json.dumps(report)  # written as the report's JSON
