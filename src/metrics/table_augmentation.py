"""The augmentation report of a table: does adding generated rows help a classifier of the target?

Every arm trains the same classifier (:class:`src.metrics.row_classifier.RowClassifier`, gradient-
boosted trees on the raw rows) on a different training set and tests it on the real test split:

* ``real``: the real training rows;
* ``real+synthetic``: the real rows plus the export's generated rows (a fill's, or a plain export's);
* ``real+oversample``: rare-class real rows repeated up to the largest class (imbalanced-learn's
  ``RandomOverSampler``);
* ``real+class_weights``: the real rows with a class-balanced loss (inverse class frequency);
* ``real+smote``: SMOTE-NC (SMOTE when every feature is continuous) on the real rows, as
  imbalanced-learn implements it; missing values are first imputed (median / most frequent),
  since SMOTE interpolates between neighbours and has no missing state.

Reported per arm, mean and std over the seeds (the trees' and the resamplers' random state):
accuracy, macro F1, and on the *rare classes* (those with fewer real training rows than half the
largest class; with a fill, the classes it filled) their recall and their average precision (the
area under the precision-recall curve, one-vs-rest), the numbers a practitioner of skewed data
reads. The protocol (classifier, rare classes, seeds, counts per arm) is in the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from imblearn.over_sampling import SMOTE, SMOTENC, RandomOverSampler
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, recall_score

from src.metrics.row_classifier import RowClassifier
from src.utils.errors import UserError
from src.utils.tables import TableSchema

ARMS = ("real", "real+synthetic", "real+oversample", "real+class_weights", "real+smote")
# A class is rare when it has fewer real training rows than this share of the largest class.
RARE_SHARE = 0.5
SMOTE_NEIGHBOURS = 5


def rare_classes(labels: np.ndarray, num_classes: int, filled: Sequence[int] | None = None) -> list[int]:
    """The classes the report calls rare: those a fill filled, else those under half the largest."""
    if filled:
        return sorted(int(c) for c in filled)
    counts = np.bincount(labels, minlength=num_classes)
    return [c for c in range(num_classes) if 0 < counts[c] < RARE_SHARE * counts.max()]


def _smote(schema: TableSchema, features: list[int], x: np.ndarray, y: np.ndarray, seed: int):
    """SMOTE(-NC) on the imputed rows; the neighbours are capped by the smallest class."""
    discrete = [j for j, i in enumerate(features) if schema.columns[i].kind == "discrete"]
    x = x.copy()
    if np.isnan(x).any():
        continuous = [j for j in range(x.shape[1]) if j not in discrete]
        if continuous:
            x[:, continuous] = SimpleImputer(strategy="median").fit_transform(x[:, continuous])
        if discrete:
            x[:, discrete] = SimpleImputer(strategy="most_frequent").fit_transform(x[:, discrete])
    smallest = int(np.bincount(y)[np.bincount(y) > 0].min())
    if smallest < 2:
        raise UserError(
            "real+smote needs at least 2 real rows in every class (SMOTE interpolates between them)."
        )
    k = min(SMOTE_NEIGHBOURS, smallest - 1)
    if discrete and len(discrete) < x.shape[1]:
        sampler = SMOTENC(categorical_features=discrete, k_neighbors=k, random_state=seed)
    elif discrete:
        raise UserError("real+smote needs at least one continuous feature column; this table has none.")
    else:
        sampler = SMOTE(k_neighbors=k, random_state=seed)
    return sampler.fit_resample(x, y)


def _arm_data(
    arm: str,
    schema: TableSchema,
    clf: RowClassifier,
    real: tuple[np.ndarray, np.ndarray],
    synthetic: tuple[np.ndarray, np.ndarray],
    seed: int,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(feature rows, labels, class_weighted)`` of one arm (features: every column but the target)."""
    x, y = clf.inputs(real[0]), real[1]
    if arm == "real":
        return x, y, False
    if arm == "real+synthetic":
        return np.concatenate([x, clf.inputs(synthetic[0])]), np.concatenate([y, synthetic[1]]), False
    if arm == "real+oversample":
        xs, ys = RandomOverSampler(random_state=seed).fit_resample(x, y)
        return xs, ys, False
    if arm == "real+class_weights":
        return x, y, True
    if arm == "real+smote":
        xs, ys = _smote(schema, clf.features, x, y, seed)
        return xs, ys, False
    raise ValueError(arm)


def table_augmentation_report(
    schema: TableSchema,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    synthetic: tuple[np.ndarray, np.ndarray],
    seeds: Sequence[int],
    filled: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Trains every arm with every seed and tests it on ``test``; rows are raw-layout arrays."""
    if schema.target is None:
        raise UserError("the augmentation report needs a target column: set data.target.")
    if not seeds:
        raise UserError("augmentation.seeds=[] trains nothing: give seeds, e.g. augmentation.seeds=[0,1,2].")
    k = schema.num_classes
    train = (np.asarray(train[0]), np.asarray(train[1]).astype(int))
    test = (np.asarray(test[0]), np.asarray(test[1]).astype(int))
    synthetic = (np.asarray(synthetic[0]), np.asarray(synthetic[1]).astype(int))
    rare = rare_classes(train[1], k, filled)
    runs: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    sizes: dict[str, int] = {}
    for seed in seeds:
        for arm in ARMS:
            clf = RowClassifier(schema, seed=seed)
            x, y, weighted = _arm_data(arm, schema, clf, train, synthetic, seed)
            sizes[arm] = len(y)
            if weighted:
                clf.model.set_params(class_weight="balanced")
            clf.model.fit(x, y)
            runs[arm].append(_scores(clf, test, rare, k))
    arms = {
        arm: {
            name: {"mean": float(np.mean(values)), "std": float(np.std(values)), "runs": values}
            for name, values in _by_score(results).items()
        }
        for arm, results in runs.items()
    }
    return {
        "arms": arms,
        "protocol": {
            "classifier": RowClassifier(schema).describe(),
            "seeds": list(seeds),
            "rare_classes": [schema.class_names[c] for c in rare],
            "rare_rule": "the classes the fill filled"
            if filled
            else f"fewer real training rows than {RARE_SHARE:g} x the largest class",
            "rows_per_arm": sizes,
            "n_test": len(test[1]),
            "n_synthetic": len(synthetic[1]),
            "smote": f"imbalanced-learn SMOTE-NC / SMOTE, k_neighbors <= {SMOTE_NEIGHBOURS}, missing values imputed",
        },
    }


def _scores(
    clf: RowClassifier, test: tuple[np.ndarray, np.ndarray], rare: list[int], k: int
) -> dict[str, float]:
    x, y = test
    proba = clf.probabilities(x).numpy()
    predicted = proba.argmax(1)
    scores = {
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, average="macro", labels=list(range(k)), zero_division=0)),
    }
    present = [c for c in rare if (y == c).any()]
    if present:
        scores["rare_recall"] = float(
            recall_score(y, predicted, labels=present, average="macro", zero_division=0)
        )
        scores["rare_pr_auc"] = float(
            np.mean([average_precision_score(y == c, proba[:, c]) for c in present])
        )
    return scores


def _by_score(results: list[dict[str, float]]) -> dict[str, list[float]]:
    names = dict.fromkeys(name for result in results for name in result)
    return {name: [r[name] for r in results if name in r] for name in names}


def table_augmentation_markdown(report: dict[str, Any], title: str) -> list[str]:
    """The report's table (mean ± std over seeds) and its protocol, as markdown lines."""
    protocol = report["protocol"]
    names = ["accuracy", "macro_f1", "rare_recall", "rare_pr_auc"]
    lines = [
        f"# Augmentation report of `{title}`",
        "",
        f"Classifier: {protocol['classifier']['classifier']} on every column but the target, trained per arm "
        f"with seeds {protocol['seeds']}, tested on the real test split ({protocol['n_test']} rows). Rare classes "
        f"({protocol['rare_rule']}): {', '.join(protocol['rare_classes']) or 'none'}. SMOTE: {protocol['smote']}.",
        "",
        "| arm | rows | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for arm, scores in report["arms"].items():
        cells = [f"{scores[n]['mean']:.4f} ± {scores[n]['std']:.4f}" if n in scores else "n/a" for n in names]
        lines.append(f"| {arm} | {protocol['rows_per_arm'][arm]} | " + " | ".join(cells) + " |")
    return lines
