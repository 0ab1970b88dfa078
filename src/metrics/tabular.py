"""Scores of a synthetic table against real rows: fidelity, diversity, privacy and utility.

Pure functions on ``pandas.DataFrame`` s described by one :class:`~src.utils.tables.TableSchema`
(decoded rows, as :meth:`TableSchema.decode` writes them). Every frame is first turned into
:func:`raw_values`: the raw layout of ``src/utils/tables.py`` with continuous values kept in float64
(the float32 layout would merge values the table keeps apart) and discrete columns as category codes
(the missing state is a code of its own).

**Quality** follows the SDMetrics single-table quality report (checked against ``sdmetrics`` in
``tests/test_table_scores.py``):

* ``column_shapes``: mean over columns of the KS complement (continuous: ``1 -`` the two-sample
  Kolmogorov-Smirnov statistic, missing values dropped, values rounded to 14 decimals) or the TV
  complement (discrete: ``1 -`` total variation distance of the category frequencies, missing values
  dropped; a category only the synthetic rows use gets a real count of ``1e-6``, as SDMetrics does);
* ``column_pair_trends``: mean over column pairs of the correlation similarity (two continuous
  columns: ``1 - |r_real - r_synth| / 2``, Pearson, on rows where both are present; NaN, i.e. left
  out, when a column is constant) or the contingency similarity (every other pair: ``1 -`` total
  variation distance of the 2-D frequency tables, missing values a category of their own). A
  continuous column paired with a discrete one is binned first, as the report does: 10 equal-width
  bins between its own minimum and maximum, **for each frame separately** (real rows on the real
  range, synthetic rows on theirs; missing values and the maximum share the last bin). So a mixed
  pair sees the shape of the joint distribution, not its location: a shifted column leaves it
  unchanged and shows in ``column_shapes`` instead;
* ``quality``: the mean of the two (NaN-aware).

The one difference from the package: above 50,000 rows SDMetrics' report scores contingency tables
on an unseeded random subsample of 50,000 rows; these functions use every row.

**Detection** (``detection_auc``): the classifier two-sample test of :mod:`src.metrics.detection`
on encoded rows (continuous standardised on the real rows, with a 0/1 flag for a missing value;
discrete one-hot, missing state included): the smaller set fixes the count per class, a logistic
regression is cross-validated (seeded folds; identical rows stay in one fold) and the fold ROC AUCs
are averaged.
0.5: the classifier cannot tell the rows from real ones; 1: it always can.

**Privacy** on the Gower distance (:func:`gower_nearest`): per column, ``|a - b| / (high - low)``
for continuous values (the schema's range; a missing value against a present one: 1, two missing: 0)
and 0/1 for a category mismatch, averaged over columns (0 = identical rows, 1 = different in every
column). ``dcr``: median distance of the rows to their closest training row (reference: held-out real
rows' DCR; copies score 0, implausible rows score far above the reference). ``dcr_closer_share``:
share of rows closer to a training row than to every held-out row, the two sets subsampled to the same
size (ties count half): 0.5 when the rows are no closer to the training rows than to unseen ones.
``exact_copy_share``: rows identical to a training row after decoding.

**Diversity and balance**: ``distinct_share`` (distinct rows / rows: collapse repeats rows),
``category_coverage`` (of the categories the real rows use, summed over discrete columns, the share
the synthetic rows use too) and ``target_tv`` (total variation distance between the target's class
frequencies in the synthetic and the real rows).

**Utility** (:func:`utility_scores`): train-on-synthetic, test-on-real (TSTR) with a scikit-learn
classifier of the target from the other columns, scored on the real test rows by accuracy, macro F1
and ROC AUC (one-vs-rest, macro over the classes of the test rows); beside it the same classifier
trained on as many real training rows (``trtr_*``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from src.utils.errors import UserError
from src.utils.tables import TableSchema

DetectionClassifier = Literal["logistic", "mlp"]
UtilityClassifier = Literal["hist_gradient_boosting", "logistic"]

# SDMetrics' KSComplement rounds values to sys.float_info.dig - 1 decimals before the test.
KS_DECIMALS = 14
# SDMetrics' TVComplement gives a category only the synthetic rows hold this real count.
TV_REGULARISATION = 1e-6
# Bins of a continuous column in a mixed column pair (numpy's histogram_bin_edges default).
PAIR_BINS = 10
# Distance matrices are built in blocks of at most this many entries (memory, not speed).
BLOCK_ENTRIES = 4_000_000
QUALITY_SCORES = ("quality", "column_shapes", "column_pair_trends")
PRIVACY_SCORES = ("dcr", "dcr_closer_share")
UTILITY_STATS = ("accuracy", "f1", "roc_auc")


# ---------------------------------------------------------------------------- layout
def raw_values(frame: pd.DataFrame, schema: TableSchema) -> np.ndarray:
    """``frame`` in the raw layout, float64: continuous values as they are (NaN = missing),
    discrete columns as codes (``len(categories)`` = the missing state)."""
    out = schema.encode(frame).astype(np.float64)
    for i in schema.continuous_indices:
        name = schema.columns[i].name
        out[:, i] = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _codes(values: np.ndarray) -> np.ndarray:
    return values.astype(np.int64)


# ---------------------------------------------------------------------------- quality
def ks_complement(real: np.ndarray, synthetic: np.ndarray) -> float:
    """``1 -`` the two-sample KS statistic of the present values (NaN when a side has none)."""
    a = np.sort(np.round(real[~np.isnan(real)], KS_DECIMALS))
    b = np.sort(np.round(synthetic[~np.isnan(synthetic)], KS_DECIMALS))
    if not len(a) or not len(b):
        return math.nan
    both = np.concatenate([a, b])
    # The largest gap between the two empirical CDFs, at every observed value (scipy's ks_2samp).
    gap = np.searchsorted(a, both, side="right") / len(a) - np.searchsorted(b, both, side="right") / len(b)
    return float(1.0 - np.abs(gap).max())


def tv_complement(real: np.ndarray, synthetic: np.ndarray, n_codes: int, missing_code: int | None) -> float:
    """``1 -`` the total variation distance of two code columns' frequencies, missing state dropped."""
    if missing_code is not None:
        real, synthetic = real[real != missing_code], synthetic[synthetic != missing_code]
    if not len(real) or not len(synthetic):
        return math.nan
    p = np.bincount(synthetic, minlength=n_codes).astype(np.float64)
    q = np.bincount(real, minlength=n_codes).astype(np.float64)
    q = q + TV_REGULARISATION * ((p > 0) & (q == 0))
    return float(1.0 - 0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def column_shape_scores(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema) -> dict[str, float]:
    """Each column's KS complement (continuous) or TV complement (discrete)."""
    r, s = raw_values(real, schema), raw_values(synthetic, schema)
    scores = {}
    for i, column in enumerate(schema.columns):
        if column.kind == "continuous":
            scores[column.name] = ks_complement(r[:, i], s[:, i])
        else:
            missing = len(column.categories) if column.missing else None
            scores[column.name] = tv_complement(_codes(r[:, i]), _codes(s[:, i]), column.n_codes, missing)
    return scores


def correlation_similarity(real: np.ndarray, synthetic: np.ndarray) -> float:
    """``1 - |r_real - r_synth| / 2`` for two continuous columns (``(N, 2)`` arrays); NaN when a
    column is constant or a side has fewer than two complete rows."""
    for pair in (real, synthetic):
        for column in pair.T:
            if len(np.unique(column[~np.isnan(column)])) == 1:
                return math.nan
    r_real, r_synth = _pearson(real), _pearson(synthetic)
    if math.isnan(r_real) or math.isnan(r_synth):
        return math.nan
    return 1.0 - abs(r_real - r_synth) / 2.0


def _pearson(pair: np.ndarray) -> float:
    pair = pair[~np.isnan(pair).any(axis=1)]
    if len(pair) < 2:
        return math.nan
    centred = pair - pair.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    if (norms == 0).any():
        return math.nan
    return float(np.clip((centred[:, 0] @ centred[:, 1]) / (norms[0] * norms[1]), -1.0, 1.0))


def contingency_similarity(real: np.ndarray, synthetic: np.ndarray, sizes: tuple[int, int]) -> float:
    """``1 -`` the total variation distance of two code pairs' joint frequencies (``(N, 2)`` ints,
    codes below ``sizes``)."""
    width = sizes[1]
    p = np.bincount(real[:, 0] * width + real[:, 1], minlength=sizes[0] * width) / len(real)
    q = np.bincount(synthetic[:, 0] * width + synthetic[:, 1], minlength=sizes[0] * width) / len(synthetic)
    return float(1.0 - 0.5 * np.abs(p - q).sum())


def _binned(values: np.ndarray) -> np.ndarray:
    """SDMetrics' bins of a continuous column: 10 equal-width bins over its own present values;
    ``np.digitize`` puts the maximum and missing values in bin 11."""
    edges = np.histogram_bin_edges(values[~np.isnan(values)], bins=PAIR_BINS)
    return np.digitize(values, edges).astype(np.int64)


def column_pair_scores(
    real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema
) -> dict[tuple[str, str], float]:
    """Each column pair's correlation similarity (both continuous) or contingency similarity (others)."""
    r, s = raw_values(real, schema), raw_values(synthetic, schema)
    binned = {
        i: (_binned(r[:, i]), _binned(s[:, i])) for i in schema.continuous_indices if schema.discrete_indices
    }
    scores = {}
    for i, j in combinations(range(len(schema)), 2):
        ci, cj = schema.columns[i], schema.columns[j]
        if ci.kind == cj.kind == "continuous":
            score = correlation_similarity(r[:, [i, j]], s[:, [i, j]])
        else:
            sides, sizes = [], []
            for k, column in ((i, ci), (j, cj)):
                if column.kind == "continuous":
                    sides.append(binned[k])
                    sizes.append(PAIR_BINS + 2)
                else:
                    sides.append((_codes(r[:, k]), _codes(s[:, k])))
                    sizes.append(column.n_codes)
            score = contingency_similarity(
                np.stack([sides[0][0], sides[1][0]], axis=1),
                np.stack([sides[0][1], sides[1][1]], axis=1),
                (sizes[0], sizes[1]),
            )
        scores[(ci.name, cj.name)] = score
    return scores


def _nanmean(values: Iterable[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def quality_scores(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema) -> dict[str, float]:
    """``quality``, ``column_shapes`` and ``column_pair_trends`` (SDMetrics' quality report)."""
    shapes = _nanmean(column_shape_scores(real, synthetic, schema).values())
    trends = _nanmean(column_pair_scores(real, synthetic, schema).values())
    return {"quality": _nanmean([shapes, trends]), "column_shapes": shapes, "column_pair_trends": trends}


# ---------------------------------------------------------------------------- encoded rows
class RowEncoder:
    """Numeric features of raw-layout rows for scikit-learn: continuous columns standardised on the
    rows :meth:`fit` saw (missing values at the mean, plus a 0/1 missing flag where the schema has
    missing values), discrete columns one-hot over their codes (the missing state included).

    Args:
        schema: the table's schema.
        exclude: column indices left out (the target, for a classifier of it).
    """

    def __init__(self, schema: TableSchema, exclude: Iterable[int] = ()) -> None:
        self.schema = schema
        skip = set(exclude)
        self.continuous = [i for i in schema.continuous_indices if i not in skip]
        self.discrete = [i for i in schema.discrete_indices if i not in skip]
        self.center = np.zeros(len(self.continuous))
        self.scale = np.ones(len(self.continuous))

    def fit(self, raw: np.ndarray) -> RowEncoder:
        values = raw[:, self.continuous]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": an all-missing column
            center, scale = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        self.center = np.nan_to_num(center, nan=0.0)
        self.scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        parts = []
        values = raw[:, self.continuous]
        parts.append(np.nan_to_num((values - self.center) / self.scale, nan=0.0))
        flags = [k for k, i in enumerate(self.continuous) if self.schema.columns[i].missing]
        if flags:
            parts.append(np.isnan(values[:, flags]).astype(np.float64))
        for i in self.discrete:
            parts.append(np.eye(self.schema.columns[i].n_codes)[_codes(raw[:, i])])
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(raw), 0))


def _subsample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` of ``n`` row indices, in order (all of them when ``size >= n``)."""
    return np.arange(n) if size >= n else np.sort(rng.permutation(n)[:size])


# ---------------------------------------------------------------------------- detection
def _detection_model(kind: DetectionClassifier, seed: int) -> Any:
    # scikit-learn loads at the first evaluation, not at every command's start.
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if kind == "mlp":
        return MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=seed)
    return LogisticRegression(max_iter=1000)


def detection_auc(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    seed: int = 0,
    folds: int = 3,
    classifier: DetectionClassifier = "logistic",
) -> float:
    """Cross-validated ROC AUC of a classifier telling ``real`` rows from ``synthetic`` rows
    (0.5: it cannot tell them apart). NaN with fewer than two rows on a side."""
    from sklearn.metrics import roc_auc_score

    r, s = raw_values(real, schema), raw_values(synthetic, schema)
    n = min(len(r), len(s))
    if n < 2:
        return math.nan
    rng = np.random.default_rng(seed)
    r, s = r[_subsample(len(r), n, rng)], s[_subsample(len(s), n, rng)]
    encoder = RowEncoder(schema).fit(r)
    x = np.concatenate([encoder.transform(s), encoder.transform(r)])
    y = np.concatenate([np.zeros(n, dtype=int), np.ones(n, dtype=int)])
    fold = _grouped_folds(x, max(2, folds), rng)
    aucs = []
    for k in range(max(2, folds)):
        train, test = fold != k, fold == k
        if len(np.unique(y[train])) < 2 or len(np.unique(y[test])) < 2:
            continue
        model = _detection_model(classifier, seed).fit(x[train], y[train])
        aucs.append(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))
    return float(np.mean(aucs)) if aucs else math.nan


def _grouped_folds(x: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """A fold for every row; identical rows share one. Split across folds, a row present in both
    sets would be learnt with one label and tested with the other, pulling the AUC below 0.5 (a
    frame against itself scored 0.39 with plain stratified folds)."""
    ids: dict[bytes, int] = {}
    group = np.array([ids.setdefault(key, len(ids)) for key in _row_keys(x)])
    fold_of_group = np.empty(len(ids), dtype=np.int64)
    fold_of_group[rng.permutation(len(ids))] = np.arange(len(ids)) % folds
    return fold_of_group[group]


# ---------------------------------------------------------------------------- privacy
def gower_nearest(query: np.ndarray, reference: np.ndarray, schema: TableSchema) -> np.ndarray:
    """Gower distance of each ``query`` row (raw layout, float64) to its closest ``reference`` row.

    Continuous values are put in units of the schema's range and clipped to it (decoded rows lie
    there already). The distance is computed as an L1 distance between embeddings that give every
    column's term exactly: a continuous value ``v`` is ``v`` or, in a column with missing values,
    ``(v/2, (1-v)/2, 0)`` against ``(0, 0, 1/2)`` for a missing one (so present vs missing is 1 and
    missing vs missing 0); discrete mismatches are counted by a product of one-hot codes.
    """
    if not len(reference):
        raise ValueError("no reference rows to measure distances to")
    q_cont, r_cont = _gower_embedding(query, reference, schema)
    q_hot, r_hot = (_one_hot(rows, schema) for rows in (query, reference))
    n_discrete = len(schema.discrete_indices)
    block = max(1, BLOCK_ENTRIES // max(1, len(reference)))
    out = torch.empty(len(query), dtype=torch.float64)
    for start in range(0, len(query), block):
        stop = min(start + block, len(query))
        if q_cont.shape[1]:
            total = torch.cdist(q_cont[start:stop], r_cont, p=1)
        else:
            total = torch.zeros(stop - start, len(reference))
        # Mismatches = n_discrete - matches: subtract the matches in one BLAS call, add the constant last.
        if n_discrete:
            total = torch.addmm(total, q_hot[start:stop], r_hot.T, alpha=-1)
        out[start:stop] = total.min(dim=1).values.double() + n_discrete
    return (out / max(1, len(schema))).numpy()


def _gower_embedding(
    query: np.ndarray, reference: np.ndarray, schema: TableSchema
) -> tuple[torch.Tensor, torch.Tensor]:
    """The continuous columns' L1 embedding of :func:`gower_nearest` for both sets."""
    parts: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    for i in schema.continuous_indices:
        column = schema.columns[i]
        span = (column.high - column.low) if column.low is not None and column.high is not None else 0.0
        low = column.low if column.low is not None else 0.0
        sides = [(rows[:, i] - low) / (span if span > 0 else 1.0) for rows in (query, reference)]
        sides = [np.clip(v, 0.0, 1.0) for v in sides]
        if not any(np.isnan(v).any() for v in sides):
            for part, v in zip(parts, sides):
                part.append(v[:, None])
            continue
        for part, v in zip(parts, sides):
            gap = np.isnan(v)
            v = np.nan_to_num(v)
            part.append(np.stack([(1 - gap) * v / 2, (1 - gap) * (1 - v) / 2, gap * 0.5], axis=1))
    # float32: the distance matrices are memory-bound; identical rows still come out at exactly 0.
    return tuple(
        torch.from_numpy(np.concatenate(p, axis=1) if p else np.zeros((len(rows), 0))).float()
        for p, rows in zip(parts, (query, reference))
    )  # type: ignore[return-value]


def _one_hot(rows: np.ndarray, schema: TableSchema) -> torch.Tensor:
    blocks = [np.eye(schema.columns[i].n_codes)[_codes(rows[:, i])] for i in schema.discrete_indices]
    return torch.from_numpy(np.concatenate(blocks, axis=1) if blocks else np.zeros((len(rows), 0))).float()


def dcr_scores(
    synthetic: pd.DataFrame,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    schema: TableSchema,
    seed: int = 0,
    n_train_reference: int = 10_000,
) -> dict[str, float]:
    """``dcr`` (median Gower distance to the closest of at most ``n_train_reference`` training rows)
    and ``dcr_closer_share`` (share of rows closer to a training row than to every ``holdout`` row,
    both sets subsampled to the same size; ties count half)."""
    s, t, h = (raw_values(f, schema) for f in (synthetic, train, holdout))
    if not len(s):
        return {"dcr": math.nan, "dcr_closer_share": math.nan}
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(t))
    scores = {"dcr": float(np.median(gower_nearest(s, t[np.sort(order[:n_train_reference])], schema)))}
    m = min(len(t), len(h))
    if m == 0:
        scores["dcr_closer_share"] = math.nan
        return scores
    # The first m of the same permutation: a subset of the DCR's training rows when m is smaller.
    to_train = gower_nearest(s, t[np.sort(order[:m])], schema)
    to_holdout = gower_nearest(s, h[_subsample(len(h), m, rng)], schema)
    scores["dcr_closer_share"] = float(np.mean((to_train < to_holdout) + 0.5 * (to_train == to_holdout)))
    return scores


def _row_keys(raw: np.ndarray) -> list[bytes]:
    # Missing values (NaN) compare equal to each other here and to no number; -0.0 becomes 0.0.
    filled = np.where(np.isnan(raw), np.inf, raw) + 0.0
    return [row.tobytes() for row in np.ascontiguousarray(filled)]


def exact_copy_share(synthetic: pd.DataFrame, train: pd.DataFrame, schema: TableSchema) -> float:
    """Share of ``synthetic`` rows identical (every decoded value) to a row of ``train``."""
    keys = _row_keys(raw_values(synthetic, schema))
    if not keys:
        return math.nan
    known = set(_row_keys(raw_values(train, schema)))
    return float(np.mean([key in known for key in keys]))


# ---------------------------------------------------------------------------- diversity, balance
def distinct_share(frame: pd.DataFrame, schema: TableSchema) -> float:
    """Distinct rows / rows (1: no row repeats)."""
    keys = _row_keys(raw_values(frame, schema))
    return len(set(keys)) / len(keys) if keys else math.nan


def category_coverage(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema) -> float:
    """Of the categories (missing state included) the real rows use, summed over discrete columns,
    the share the synthetic rows use too; NaN without discrete columns."""
    r, s = raw_values(real, schema), raw_values(synthetic, schema)
    used = covered = 0
    for i in schema.discrete_indices:
        real_codes = set(np.unique(_codes(r[:, i])).tolist())
        used += len(real_codes)
        covered += len(real_codes & set(np.unique(_codes(s[:, i])).tolist()))
    return covered / used if used else math.nan


def target_tv(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema) -> float:
    """Total variation distance between the target's class frequencies (NaN without a target)."""
    i = schema.target_index
    if i is None:
        return math.nan
    n = schema.columns[i].n_codes
    p = np.bincount(_codes(raw_values(synthetic, schema)[:, i]), minlength=n)
    q = np.bincount(_codes(raw_values(real, schema)[:, i]), minlength=n)
    return float(0.5 * np.abs(p / max(p.sum(), 1) - q / max(q.sum(), 1)).sum())


# ---------------------------------------------------------------------------- utility
def _utility_model(kind: UtilityClassifier, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    if kind == "logistic":
        return LogisticRegression(max_iter=1000)
    return HistGradientBoostingClassifier(random_state=seed)


def classifier_scores(
    train_raw: np.ndarray,
    test_raw: np.ndarray,
    schema: TableSchema,
    classifier: UtilityClassifier = "hist_gradient_boosting",
    seed: int = 0,
) -> dict[str, float]:
    """``accuracy``, macro ``f1`` and ``roc_auc`` (one-vs-rest, macro over the test rows' classes)
    on ``test_raw`` of a classifier of the target trained on ``train_raw`` (raw layout, float64).

    Training rows of a single class give the constant classifier (ROC AUC 0.5)."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    target = schema.target_index
    if target is None:
        raise UserError("train-on-synthetic scores need a target column: set data.target.")
    n_classes = schema.columns[target].n_codes
    y_train, y_test = _codes(train_raw[:, target]), _codes(test_raw[:, target])
    encoder = RowEncoder(schema, exclude=[target]).fit(train_raw)
    x_test = encoder.transform(test_raw)
    probabilities = np.zeros((len(test_raw), n_classes))
    classes = np.unique(y_train)
    if len(classes) == 1:
        probabilities[:, classes[0]] = 1.0
    else:
        from threadpoolctl import threadpool_limits

        # One OpenMP thread: on small tables the trees' thread synchronisation costs more than it
        # saves, and on a busy host (two test workers on two cores) it made a 1,000-row fit 25x slower.
        with threadpool_limits(limits=1, user_api="openmp"):
            model = _utility_model(classifier, seed).fit(encoder.transform(train_raw), y_train)
            probabilities[:, model.classes_.astype(int)] = model.predict_proba(x_test)
    predicted = probabilities.argmax(axis=1)
    aucs = [
        roc_auc_score(y_test == c, probabilities[:, c])
        for c in np.unique(y_test)
        if 0 < (y_test == c).sum() < len(y_test)
    ]
    return {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "f1": float(f1_score(y_test, predicted, average="macro")),
        "roc_auc": float(np.mean(aucs)) if aucs else math.nan,
    }


def utility_scores(
    synthetic: pd.DataFrame,
    train: pd.DataFrame,
    test: pd.DataFrame,
    schema: TableSchema,
    classifier: UtilityClassifier = "hist_gradient_boosting",
    seed: int = 0,
    with_real: bool = True,
) -> dict[str, float]:
    """``tstr_<stat>`` (trained on ``synthetic``) and, with ``with_real``, ``trtr_<stat>`` (trained on
    as many ``train`` rows, seeded subsample), both tested on ``test``."""
    s, test_raw = raw_values(synthetic, schema), raw_values(test, schema)
    scores = {f"tstr_{k}": v for k, v in classifier_scores(s, test_raw, schema, classifier, seed).items()}
    if with_real:
        t = raw_values(train, schema)
        t = t[_subsample(len(t), len(s), np.random.default_rng(seed))]
        scores.update(
            {f"trtr_{k}": v for k, v in classifier_scores(t, test_raw, schema, classifier, seed).items()}
        )
    return scores


# ---------------------------------------------------------------------------- all of them
@dataclass(frozen=True)
class TableScoreOptions:
    """Which table scores, and their parameters (the protocol records all of them)."""

    detection: bool = True
    detection_classifier: DetectionClassifier = "logistic"
    detection_folds: int = 3
    dcr: bool = True
    n_train_reference: int = 10_000
    tstr: bool = True
    tstr_classifier: UtilityClassifier = "hist_gradient_boosting"
    seed: int = 0


def table_score_names(
    options: TableScoreOptions, schema: TableSchema | None, stage: str, train: bool = True
) -> list[str]:
    """The names :func:`score_table` returns for ``stage`` (TSTR at test only, with a target)."""
    names = list(QUALITY_SCORES)
    names += ["detection_auc"] if options.detection else []
    names += list(PRIVACY_SCORES) if options.dcr and train else []
    names += ["exact_copy_share"] if train else []
    names += ["distinct_share"]
    names += ["category_coverage"] if schema is None or schema.discrete_indices else []
    has_target = schema is not None and schema.target is not None
    names += ["target_tv"] if has_target else []
    if options.tstr and has_target and stage == "test":
        names += [f"{side}_{stat}" for side in ("tstr", "trtr") for stat in UTILITY_STATS]
    return names


def score_table(
    synthetic: pd.DataFrame,
    real: pd.DataFrame,
    schema: TableSchema,
    options: TableScoreOptions | None = None,
    *,
    train: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    with_real_utility: bool = True,
) -> dict[str, float]:
    """Every enabled score of ``synthetic`` against ``real`` (the scored split).

    Args:
        train: the real training rows (privacy scores; the TRTR baseline's rows).
        test: the real test rows: with a target, the utility scores (TSTR) are computed on them.
        with_real_utility: also the train-on-real baseline (``trtr_*``).
    """
    opts = options or TableScoreOptions()
    scores = quality_scores(real, synthetic, schema)
    if opts.detection:
        scores["detection_auc"] = detection_auc(
            real, synthetic, schema, opts.seed, opts.detection_folds, opts.detection_classifier
        )
    if train is not None:
        if opts.dcr:
            scores.update(dcr_scores(synthetic, train, real, schema, opts.seed, opts.n_train_reference))
        scores["exact_copy_share"] = exact_copy_share(synthetic, train, schema)
    scores["distinct_share"] = distinct_share(synthetic, schema)
    if schema.discrete_indices:
        scores["category_coverage"] = category_coverage(real, synthetic, schema)
    if schema.target is not None:
        scores["target_tv"] = target_tv(real, synthetic, schema)
        if opts.tstr and test is not None:
            scores.update(
                utility_scores(
                    synthetic,
                    train if train is not None else test.iloc[:0],
                    test,
                    schema,
                    opts.tstr_classifier,
                    opts.seed,
                    with_real=with_real_utility and train is not None,
                )
            )
    return scores
