"""Classifier two-sample test (Lopez-Paz & Oquab 2017; SDMetrics' detection score).

A small scikit-learn classifier learns to tell real from generated features on one half of a
balanced, seeded sample and is scored on the other half by ROC AUC: 0.5 when it cannot tell the
sets apart (the generated features are indistinguishable to it), 1.0 when it always can.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from torch import Tensor

DetectionClassifier = Literal["logistic", "mlp"]
TEST_FRACTION = 0.5


def _classifier(kind: DetectionClassifier, seed: int) -> Any:
    # scikit-learn (~0.5 s to import) loads at the first evaluation, not at every command's start.
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "mlp":
        head = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=seed)
    else:
        head = LogisticRegression(max_iter=1000)
    # Standardised inputs: the features' scales differ by orders of magnitude between extractors.
    return make_pipeline(StandardScaler(), head)


def detection_auc(
    fake: Tensor, real: Tensor, seed: int = 0, classifier: DetectionClassifier = "logistic"
) -> float:
    """Held-out ROC AUC of a classifier telling ``real`` rows from ``fake`` rows.

    The larger set is subsampled (seeded) to the size of the smaller one, so both classes weigh the
    same; the stratified split into training and test halves uses the same seed.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    n = min(len(fake), len(real))
    x_fake = fake.detach().cpu().double().numpy()[rng.permutation(len(fake))[:n]]
    x_real = real.detach().cpu().double().numpy()[rng.permutation(len(real))[:n]]
    x = np.concatenate([x_fake, x_real])
    y = np.concatenate([np.zeros(n, dtype=int), np.ones(n, dtype=int)])
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, stratify=y, random_state=seed
    )
    model = _classifier(classifier, seed).fit(x_train, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))
