"""Table scores: the SDMetrics definitions checked against the ``sdmetrics`` package, closed forms,
the table verdict on constructed sets, and the ``metrics=table`` callback in a training run.

``sdmetrics`` is a development-only dependency (it pulls BUSL-licensed packages): only this test
imports it. The stand-in table is a mixed one with missing values in a continuous and a discrete
column, whose rows a seeded generator draws, so "real held-out rows" (drawn with another seed) are
rows that no split holds.
"""

from __future__ import annotations

import math
import warnings

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch

from src.metrics import TableMetrics, TableScorer
from src.metrics.tabular import (
    TableScoreOptions,
    column_pair_scores,
    column_shape_scores,
    dcr_scores,
    detection_auc,
    exact_copy_share,
    gower_nearest,
    quality_scores,
    raw_values,
    table_score_names,
    utility_scores,
)
from src.metrics.verdict import TABLE_RULES, judge
from src.runtime.summary import console_summary
from src.utils.tables import TableSchema


def stand_in_table(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """A mixed table: whole-number and real continuous columns (income with gaps), text categories
    (region with gaps), a flag, a small count (discrete) and a three-class target."""
    rng = np.random.default_rng(seed)
    age = rng.gamma(5, 8, n).round() + 18
    income = np.exp(rng.normal(10 + 0.01 * age + shift, 0.5, n)).round(2)
    income[rng.random(n) < 0.07] = np.nan
    region = rng.choice(["north", "south", "east", "west", "centre"], n, p=[0.4, 0.25, 0.2, 0.1, 0.05])
    region = region.astype(object)
    region[rng.random(n) < 0.05] = None
    smoker = rng.random(n) < 1 / (1 + np.exp(-(age - 45) / 10))
    score = rng.normal(0, 1, n) + 0.5 * smoker
    label = np.where(np.nan_to_num(income) > 40_000, "high", np.where(score > 0.5, "mid", "low"))
    return pd.DataFrame(
        {
            "age": age.astype(int),
            "income": income,
            "region": region,
            "smoker": smoker,
            "score": score.round(3),
            "kids": rng.poisson(1.5, n).clip(0, 5),
            "label": label,
        }
    )


# ---------------------------------------------------------------------------- against sdmetrics
@pytest.fixture(scope="module")
def two_frames() -> tuple[pd.DataFrame, pd.DataFrame, TableSchema]:
    real = stand_in_table(160, 0)
    synthetic = stand_in_table(110, 1, shift=0.4)
    synthetic.loc[:4, "region"] = "islands"  # a category only the synthetic rows use
    real["constant"] = 2.5  # correlations with a constant column are undefined (left out)
    synthetic["constant"] = np.linspace(0.5, 4.5, len(synthetic))
    schema = TableSchema.infer(pd.concat([real, synthetic], ignore_index=True), target="label")
    return real, synthetic, schema


def _metadata(schema: TableSchema) -> dict:
    kinds = {"continuous": "numerical", "discrete": "categorical"}
    return {"columns": {c.name: {"sdtype": kinds[c.kind]} for c in schema.columns}}


def test_quality_matches_the_sdmetrics_quality_report(two_frames) -> None:
    import sdmetrics  # a development dependency: the reference these scores must match; never skipped
    from sdmetrics.reports.single_table import QualityReport

    real, synthetic, schema = two_frames
    assert {"income", "region"} <= {c.name for c in schema.columns if c.missing}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = QualityReport()
        report.generate(real, synthetic, _metadata(schema), verbose=False)
    ours = quality_scores(real, synthetic, schema)
    properties = dict(zip(*report.get_properties().to_dict("list").values()))
    assert ours["quality"] == pytest.approx(report.get_score(), abs=1e-6), sdmetrics.__version__
    assert ours["column_shapes"] == pytest.approx(properties["Column Shapes"], abs=1e-6)
    assert ours["column_pair_trends"] == pytest.approx(properties["Column Pair Trends"], abs=1e-6)
    shapes = column_shape_scores(real, synthetic, schema)
    for row in report.get_details("Column Shapes").itertuples():
        assert shapes[row.Column] == pytest.approx(row.Score, abs=1e-6), row.Column
    pairs = column_pair_scores(real, synthetic, schema)
    details = report.get_details("Column Pair Trends")
    for first, second, score in zip(details["Column 1"], details["Column 2"], details["Score"]):
        assert pairs[(first, second)] == pytest.approx(score, abs=1e-6, nan_ok=True), (first, second)
    # The constant column's correlations are left out by both (NaN), not scored 0.
    assert math.isnan(pairs[("age", "constant")])


def test_single_column_and_pair_metrics_match_sdmetrics(two_frames) -> None:
    from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity
    from sdmetrics.single_column import KSComplement, TVComplement

    real, synthetic, schema = two_frames
    shapes = column_shape_scores(real, synthetic, schema)
    pairs = column_pair_scores(real, synthetic, schema)
    assert shapes["income"] == pytest.approx(
        KSComplement.compute(real["income"], synthetic["income"]), abs=1e-9
    )
    assert shapes["region"] == pytest.approx(
        TVComplement.compute(real["region"], synthetic["region"]), abs=1e-9
    )
    assert pairs[("age", "income")] == pytest.approx(
        CorrelationSimilarity.compute(real[["age", "income"]], synthetic[["age", "income"]]), abs=1e-9
    )
    assert pairs[("region", "smoker")] == pytest.approx(
        ContingencySimilarity.compute(real[["region", "smoker"]], synthetic[["region", "smoker"]]), abs=1e-9
    )


# ---------------------------------------------------------------------------- closed forms
@pytest.fixture(scope="module")
def table() -> tuple[pd.DataFrame, TableSchema]:
    frame = stand_in_table(600, 2)
    return frame, TableSchema.infer(frame, target="label")


def test_scores_take_their_closed_form_values(table) -> None:
    frame, schema = table
    half, other = frame.iloc[:300].reset_index(drop=True), frame.iloc[300:].reset_index(drop=True)
    assert quality_scores(half, half, schema) == {
        "quality": 1.0,
        "column_shapes": 1.0,
        "column_pair_trends": 1.0,
    }
    # Copies: every row at distance 0 from a training row, identical after decoding.
    copies = dcr_scores(half, half, other, schema)
    assert copies["dcr"] == 0.0 and copies["dcr_closer_share"] == 1.0
    assert exact_copy_share(half, half, schema) == 1.0 and exact_copy_share(other, half, schema) == 0.0
    # Unseen rows of the same table: no closer to the training rows than to other unseen ones.
    fresh = dcr_scores(stand_in_table(300, 5), half, other, schema)
    assert 0.35 < fresh["dcr_closer_share"] < 0.65 and fresh["dcr"] > 0
    # A frame against itself: the classifier cannot tell (identical inputs, identical outputs).
    assert detection_auc(half, half, schema) == pytest.approx(0.5, abs=0.02)
    assert detection_auc(half, other, schema) < 0.65
    shifted = half.copy()
    shifted["age"] = shifted["age"] + 60
    shifted["score"] = shifted["score"] + 5
    assert detection_auc(half, shifted, schema) > 0.99


def test_gower_distance_terms() -> None:
    frame = pd.DataFrame({"x": [0.0, 10.0, np.nan], "c": ["a", "b", "a"]})
    schema = TableSchema.infer(frame, discrete_columns=["c"])
    rows = raw_values(frame, schema)
    query = raw_values(pd.DataFrame({"x": [7.0, np.nan, np.nan, 5.0], "c": ["a", "b", "a", "b"]}), schema)
    # (|7 - 0| / 10 + 0) / 2 against the first row; (1 + 0) / 2 against the second (x present vs
    # missing); 0 against the third (both missing, same category); (|5 - 10| / 10 + 0) / 2.
    assert gower_nearest(query, rows, schema) == pytest.approx([0.35, 0.5, 0.0, 0.25])


def test_utility_beside_train_on_real(table) -> None:
    frame, schema = table
    train, test = frame.iloc[:400].reset_index(drop=True), frame.iloc[400:].reset_index(drop=True)
    scores = utility_scores(train.iloc[:200], train, test, schema, classifier="logistic")
    assert set(scores) == {f"{s}_{k}" for s in ("tstr", "trtr") for k in ("accuracy", "f1", "roc_auc")}
    assert scores["tstr_accuracy"] > 0.8 and scores["trtr_roc_auc"] > 0.9
    # One class only in the training rows: the constant classifier (ROC AUC 0.5), no error.
    one = train[train["label"] == "low"]
    constant = utility_scores(one, train, test, schema, classifier="logistic", with_real=False)
    assert constant["tstr_roc_auc"] == 0.5
    assert constant["tstr_accuracy"] == pytest.approx((test["label"] == "low").mean())


def test_every_table_score_is_in_the_table_of_scores(table) -> None:
    from src.metrics import registry

    _, schema = table
    names = table_score_names(TableScoreOptions(), schema, "test")
    rows = {name: registry.lookup(f"test/{name}") for name in names}
    assert all(row is not None for row in rows.values()), rows
    # dcr is judged beside the reference only: far below is copying, far above implausible rows.
    assert [name for name, row in rows.items() if row.higher_is_better is None] == ["dcr"]
    assert registry.mode("val/quality") == "max" and registry.mode("val/exact_copy_share") == "min"
    assert {rule.score for rule in TABLE_RULES} <= set(names)


def test_each_table_rule_fails_only_beyond_its_margin() -> None:
    for rule in TABLE_RULES:
        reference = 0.5
        limit = rule.limit(reference)
        step = 1e-6 if rule.kind == "above" else -1e-6
        verdict = judge({rule.score: limit + step}, {rule.score: reference}, TABLE_RULES)[rule.aspect]
        assert verdict["pass"] is False and verdict["checks"][0]["limit"] == pytest.approx(limit)
        assert judge({rule.score: limit - step}, {rule.score: reference}, TABLE_RULES)[rule.aspect]["pass"]


# ---------------------------------------------------------------------------- the verdict
@pytest.fixture(scope="module")
def datamodule(tmp_path_factory: pytest.TempPathFactory):
    from src.data.table import TableDataModule

    root = tmp_path_factory.mktemp("table")
    stand_in_table(1500, 3).to_csv(root / "people.csv", index=False)
    dm = TableDataModule(path=str(root / "people.csv"), target="label", data_dir=str(root), batch_size=100)
    dm.prepare_data()
    dm.setup()
    return dm


def _constructed(kind: str, dm, n: int) -> pd.DataFrame:
    schema, rng = dm.schema, np.random.default_rng(0)
    if kind == "real held-out":
        # Rows of the same table that no split holds (the generator's other seed), decoded alike.
        return schema.decode(schema.encode(stand_in_table(n, 11)))
    if kind == "uniform noise":
        columns = [
            rng.uniform(c.low, c.high, n) if c.kind == "continuous" else rng.integers(0, c.n_codes, n)
            for c in schema.columns
        ]
        return schema.decode(np.stack(columns, axis=1))
    if kind == "one row repeated":
        return dm.frame("train").iloc[[7] * n].reset_index(drop=True)
    if kind == "training rows copied":
        return dm.frame("train").iloc[rng.permutation(len(dm.frame("train")))[:n]].reset_index(drop=True)
    if kind == "one class":
        test = dm.frame("test")
        return test[test["label"] == "low"].sample(n, replace=True, random_state=0).reset_index(drop=True)
    raise AssertionError(kind)


# The aspect each kind must fail and the score that must decide it; real held-out rows fail none.
EXPECTED = {
    "real held-out": {},
    "uniform noise": {"fidelity": "quality"},
    "one row repeated": {"diversity": "distinct_share"},
    "training rows copied": {"novelty": "exact_copy_share"},
    "one class": {"class_balance": "target_tv"},
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_each_bad_table_fails_its_aspect_and_real_held_out_rows_pass(datamodule, kind: str) -> None:
    scorer = TableScorer(TableScoreOptions(tstr=False))
    rows = _constructed(kind, datamodule, len(datamodule.frame("val")))
    scores = scorer.score(rows, datamodule, "val")
    protocol = scorer.protocol(datamodule, "val", len(rows), scores)
    assert protocol["reference"] == {
        "split": "test",
        "n": len(rows),
        "rows": f"{len(rows)} of the test split, drawn with seed 0",
    }
    failed = {aspect for aspect, entry in protocol["verdict"].items() if entry["pass"] is False}
    if not EXPECTED[kind]:
        assert failed == set() and protocol["warnings"] == [], protocol["warnings"]
        assert all(entry["pass"] is True for entry in protocol["verdict"].values())
        return
    for aspect, deciding in EXPECTED[kind].items():
        assert aspect in failed, (kind, protocol["verdict"])
        check = next(c for c in protocol["verdict"][aspect]["checks"] if c["score"] == deciding)
        assert not check["passed"] and check["value"] == scores[deciding]
        assert any(
            w.startswith(f"{aspect.replace('_', ' ')} fails: {deciding}") for w in protocol["warnings"]
        )
        assert any("for real held-out rows" in w for w in protocol["warnings"])


# ---------------------------------------------------------------------------- the callback
class ResamplingModel(pl.LightningModule):
    """Stand-in generator: training rows drawn at random, continuous values jittered by 2 % of
    their range (missing values stay missing)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        self.rows = datamodule.split("train")[0].float()
        spans = [(c.high - c.low) if c.kind == "continuous" else 0.0 for c in datamodule.schema.columns]
        self.spans = torch.tensor(spans)

    def training_step(self, batch, batch_idx):
        return (self.weight**2).sum()

    def validation_step(self, batch, batch_idx):
        return None

    def test_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def sample(self, n: int, labels=None, generator: torch.Generator | None = None) -> torch.Tensor:
        pick = torch.randint(len(self.rows), (n,), generator=generator, device=self.device)
        noise = torch.randn(n, len(self.spans), generator=generator, device=self.device)
        return self.rows[pick.cpu()].to(self.device) + 0.02 * noise * self.spans.to(self.device)


def test_the_callback_logs_scores_references_and_a_verdict(datamodule) -> None:
    metrics = TableMetrics(chunk_size=64, n_fake_val=100, audit=True, audit_n=100)
    metrics.prepare(datamodule)
    model = ResamplingModel()
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        limit_test_batches=1,
        callbacks=[metrics],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=datamodule)
        val = {k: float(v) for k, v in trainer.callback_metrics.items()}
        results = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    assert {f"val/{name}" for name in metrics.score_names(datamodule)} <= set(val)
    assert set(metrics.score_names(datamodule)) == set(
        table_score_names(metrics.options, datamodule.schema, "val")
    )
    test_names = table_score_names(metrics.options, datamodule.schema, "test")
    assert {f"test/{name}" for name in test_names} <= set(results) and "test/tstr_roc_auc" in results
    assert {"audit/closest_synthetic/auc", "audit/closest_synthetic/tpr_at_fpr_1pct"} <= set(results)
    val_protocol, test_protocol = metrics.protocol["val"], metrics.protocol["test"]
    assert val_protocol["n_fake"] == 100 and val_protocol["reference"]["split"] == "test"
    assert (
        test_protocol["n_fake"] == len(datamodule.frame("test"))
        and test_protocol["reference"]["split"] == "val"
    )
    assert (
        test_protocol["reference/real/tstr_accuracy"] is not None
        and "reference/real/trtr_accuracy" not in test_protocol
    )
    assert set(test_protocol["verdict"]) == {"fidelity", "diversity", "novelty", "class_balance"}
    # Jittered training rows: plausible, but every row is a near-copy of a training row.
    assert results["test/quality"] > 0.8 and val["val/dcr"] < 0.5 * val_protocol["reference/real/dcr"]
    assert (
        test_protocol["verdict"]["novelty"]["pass"] is False and metrics.protocol["audit"]["n_members"] == 100
    )
    # The same seed and chunk size draw the same rows: the export API scores them to the same numbers.
    rows = torch.cat(
        [
            model.sample(size, generator=torch.Generator().manual_seed(seed))
            for size, seed in _chunks(len(datamodule.frame("test")), 64)
        ]
    )
    scores, protocol = metrics.score_frame(datamodule.schema.decode(rows), datamodule, "test")
    for name in test_names:
        assert scores[name] == pytest.approx(results[f"test/{name}"], abs=1e-6, nan_ok=True), name
    assert protocol["verdict"] == test_protocol["verdict"]
    # The console summary shows the table scores beside their reference, in rows.
    lines = console_summary(results, {"test": test_protocol}, [])
    assert "held-out val rows" in lines[0] and any(line.split()[0] == "quality" for line in lines[1:])
    assert lines[-1].strip().startswith("verdict: fidelity pass")


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    from src.metrics.scoring import chunk_seed, chunk_sizes

    return [(count, chunk_seed(0, i)) for i, count in enumerate(chunk_sizes(n, size))]


def test_the_stand_in_rows_survive_the_raw_layout(datamodule) -> None:
    # Decoded real rows encode back to the served rows (the scores read what the models see).
    x = datamodule.split("val")[0].double().numpy()
    assert np.allclose(raw_values(datamodule.frame("val"), datamodule.schema), x, equal_nan=True, atol=1e-4)
