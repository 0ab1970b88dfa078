"""Outlier-robust precision/recall (P-precision / P-recall) and the warnings that make scores honest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from src.metrics import ScoreOptions, score_samples
from src.metrics.fidelity import knn_radii, precision_recall_density_coverage
from src.metrics.robust import outlier_ball_share, probabilistic_precision_recall
from src.metrics.scoring import EXTRACTOR_ACCURACY_FLOOR, MIN_REAL_FOR_KNN, Scorer


def reference_p_precision_recall(real: np.ndarray, fake: np.ndarray, a: float = 1.2, k: int = 4):
    """Park & Kim (2023), eq. for P-precision / P-recall, written out with full distance matrices."""

    def pairwise(x, y):
        return np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))

    def mean_knn(x):
        return np.sort(pairwise(x, x), axis=1)[:, k].mean()  # column 0 is the point itself

    def coverage(queries, centres, radius):
        membership = np.clip(1 - pairwise(queries, centres) / radius, 0, None)
        return 1 - np.prod(1 - membership, axis=1)

    return (
        coverage(fake, real, a * mean_knn(real)).mean(),
        coverage(real, fake, a * mean_knn(fake)).mean(),
    )


def test_p_precision_recall_equal_the_papers_formula() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    fake = rng.normal(0.4, 1.2, size=(250, 8))
    ours = probabilistic_precision_recall(torch.from_numpy(fake), torch.from_numpy(real), chunk=64)
    precision, recall = reference_p_precision_recall(real, fake)
    assert abs(ours["p_precision"] - precision) < 1e-9 and abs(ours["p_recall"] - recall) < 1e-9
    # Closed form: a set scored against itself sits on its own centres: both are 1.
    same = probabilistic_precision_recall(torch.from_numpy(real), torch.from_numpy(real))
    assert abs(same["p_precision"] - 1) < 1e-6 and abs(same["p_recall"] - 1) < 1e-6


def test_p_precision_recall_in_float32_match_float64_and_shared_knn_passes_change_nothing() -> None:
    """Features are float32 in practice: the scores match the float64 formula, and the radii the
    scorer computes once per side give what each score's own k-NN pass gives."""
    rng = np.random.default_rng(1)
    real64, fake64 = (
        torch.from_numpy(rng.normal(size=(400, 16))),
        torch.from_numpy(rng.normal(0.3, 1.1, size=(350, 16))),
    )
    real, fake = real64.float(), fake64.float()
    exact = probabilistic_precision_recall(fake64, real64)
    single = probabilistic_precision_recall(fake, real, chunk=128)
    assert all(abs(single[key] - exact[key]) < 1e-5 for key in exact)
    real_radii, fake_radii = knn_radii(real, (3, 4, 5)), knn_radii(fake, (3, 4))
    shared = probabilistic_precision_recall(
        fake, real, chunk=128, real_radii=real_radii, fake_radii=fake_radii
    )
    assert shared == single
    own = precision_recall_density_coverage(fake, real, 3, 5, chunk=128)
    assert precision_recall_density_coverage(fake, real, 3, 5, real_radii, 128, fake_radii) == own


def outlier_case(n_real: int = 1000, n_fake: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """A tight real cluster plus one far outlier whose 3-NN ball swallows a cloud of bad fakes."""
    g = torch.Generator().manual_seed(0)
    real = torch.randn(n_real, 16, generator=g) * 0.1
    real[0] = 40.0 / 4  # every coordinate 10: about 40 away from the cluster
    fake = torch.randn(n_fake, 16, generator=g) * 2.0 + 5.0  # between the outlier and the cluster
    return fake, real


def test_one_outlier_inflates_precision_but_not_p_precision_and_is_detected() -> None:
    fake, real = outlier_case()
    improved = precision_recall_density_coverage(fake, real, pr_k=3, dc_k=5)
    robust = probabilistic_precision_recall(fake, real)
    assert improved["precision"] > 0.8  # the outlier's ball holds the noise
    assert robust["p_precision"] < 0.05
    assert (
        improved["density"] <= 1 / 5 + 1e-9
    )  # each fake sits in one ball (the outlier's) of the k=5 expected
    assert outlier_ball_share(fake, real, knn_radii(real, (3,))[3]) > 0.99


class _Extractor:
    """Identity features with a stated held-out accuracy (what the domain extractor records)."""

    has_class_logits = False

    def __init__(self, accuracy: float, outputs: int = 2) -> None:
        self.meta = {"test_accuracy": accuracy, "num_outputs": outputs}


def test_warnings_name_each_problem_and_its_fix() -> None:
    quiet = Scorer(_Extractor(0.95), ScoreOptions(isc=False)).warnings(
        "test", 1000, {"precision_outlier_share": 0.1}
    )
    assert quiet == []
    found = Scorer(_Extractor(0.5), ScoreOptions(isc=False)).warnings(
        "val", MIN_REAL_FOR_KNN - 1, {"precision_outlier_share": 0.9}
    )
    assert len(found) == 3
    assert "50% held-out accuracy (chance 50%" in found[0] and "metrics=inception" in found[0]
    assert f"{EXTRACTOR_ACCURACY_FLOOR:.0%}" in found[0]
    assert f"{MIN_REAL_FOR_KNN - 1} images" in found[1] and "data.val_fraction" in found[1]
    assert "90%" in found[2] and "p_precision" in found[2]


def test_scores_on_a_tiny_split_carry_the_warning(mnist_files, mnist_extractor, cache_dir: Path) -> None:
    x, _ = mnist_files.split("val")
    scores, protocol = score_samples(
        x, mnist_files, "val", extractor=mnist_extractor, cache_dir=cache_dir, options=ScoreOptions(isc=False)
    )
    assert any("real val split has 24 images" in w for w in protocol["warnings"])
    assert abs(scores["p_precision"] - 1) < 1e-6 and abs(scores["p_recall"] - 1) < 1e-6
