"""A classifier of a table's target from its other columns, on raw-layout rows (src/utils/tables.py).

Gradient-boosted trees (scikit-learn's ``HistGradientBoostingClassifier``): they take the raw layout
as it is (missing values as ``NaN``, discrete columns as native categorical features through their
codes), need no scaling, and are the usual strong baseline on tables. The per-class gate of table
fills and exports (:mod:`src.export.table_export`) judges generated rows with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from torch import Tensor

from src.utils.errors import UserError
from src.utils.tables import TableSchema

# scikit-learn's native categorical support takes at most this many categories per feature.
MAX_NATIVE_CATEGORIES = 255


class RowClassifier:
    """Predicts the target's class of raw-layout rows from every other column.

    Args:
        schema: the table's schema (it must have a target).
        seed: the trees' random state.
        max_iter: boosting rounds (scikit-learn's default, 100, with early stopping on larger sets).
    """

    def __init__(self, schema: TableSchema, seed: int = 0, max_iter: int = 100) -> None:
        if schema.target_index is None:
            raise UserError("a row classifier needs a target column: set data.target.")
        self.schema = schema
        self.features = [i for i in range(len(schema)) if i != schema.target_index]
        categorical = [
            schema.columns[i].kind == "discrete" and schema.columns[i].n_codes <= MAX_NATIVE_CATEGORIES
            for i in self.features
        ]
        self.model = HistGradientBoostingClassifier(
            max_iter=max_iter, categorical_features=np.array(categorical, dtype=bool), random_state=seed
        )
        self.num_classes = schema.num_classes

    def inputs(self, rows: Tensor | np.ndarray) -> np.ndarray:
        """The feature columns (every column but the target) of raw-layout rows, as float64."""
        rows = rows.detach().cpu().numpy() if isinstance(rows, Tensor) else np.asarray(rows)
        return rows[:, self.features].astype(np.float64)

    def fit(self, rows: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> RowClassifier:
        labels = labels.cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
        if len(np.unique(labels)) < 2:
            raise UserError("the rows to classify hold one class only: a classifier needs at least two.")
        self.model.fit(self.inputs(rows), labels.astype(np.int64))
        return self

    def probabilities(self, rows: Tensor | np.ndarray) -> Tensor:
        """Class probabilities ``(N, num_classes)`` (classes absent from the fit get probability 0)."""
        known = self.model.predict_proba(self.inputs(rows))
        out = np.zeros((len(known), self.num_classes))
        out[:, self.model.classes_.astype(int)] = known
        return torch.from_numpy(out).float()

    def describe(self) -> dict[str, Any]:
        return {
            "classifier": "HistGradientBoostingClassifier",
            "features": [self.schema.columns[i].name for i in self.features],
            "max_iter": self.model.max_iter,
            "trained_on": "the real training split",
        }
