"""Cross-checks of the scores against their definitions and reference implementations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from src.data.mnist import _bundled_mnist
from src.metrics import ScoreOptions, TorchmetricsFeature, extract_features, score_samples
from src.metrics.fidelity import (
    fid_statistics,
    frechet_distance,
    kernel_distance,
    precision_recall_density_coverage,
)
from src.utils.images import to_uint8


def perturb(images: torch.Tensor, kind: str, level: float) -> torch.Tensor:
    """uint8 images with Gaussian pixel noise (std ``level`` in [0, 1] units) or Gaussian blur (sigma ``level`` px)."""
    x = images.float() / 255
    if level > 0 and kind == "noise":
        x = x + level * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    elif level > 0 and kind == "blur":
        x = TF.gaussian_blur(x, kernel_size=2 * math.ceil(3 * level) + 1, sigma=level)
    return to_uint8(x.clamp(0, 1))


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return _bundled_mnist()[0][:600]


def test_fid_of_a_set_with_itself_is_zero(mnist_files, mnist_extractor, digits) -> None:
    features = extract_features(mnist_extractor, digits).features
    stats = fid_statistics(features)
    assert abs(frechet_distance(stats, stats)) < 1e-6 * np.trace(stats["sigma"])
    # Through the whole pipeline: the test split scored against itself.
    scores, _ = score_samples(mnist_files.split("test")[0], mnist_files, "test", extractor=mnist_extractor)
    assert abs(scores["fid"]) < 1e-3
    assert scores["precision"] == scores["recall"] == scores["coverage"] == 1.0


@pytest.mark.parametrize(
    ("kind", "levels"), [("noise", [0.0, 0.05, 0.15, 0.4]), ("blur", [0.0, 0.6, 1.2, 2.4])]
)
def test_fid_and_kid_rise_monotonically_with_degradation(mnist_extractor, digits, kind: str, levels) -> None:
    real = extract_features(mnist_extractor, digits).features
    real_stats = fid_statistics(real)
    fids, kids = [], []
    for level in levels:
        fake = extract_features(mnist_extractor, perturb(digits, kind, level)).features
        fids.append(frechet_distance(fid_statistics(fake), real_stats))
        kids.append(kernel_distance(fake, real, subsets=20, subset_size=300, seed=0)[0])
    assert fids[0] < 1e-6
    assert all(a < b for a, b in itertools.pairwise(fids)), fids
    assert all(a < b for a, b in itertools.pairwise(kids)), kids


def test_fid_equals_torchmetrics_fid_on_the_same_features(mnist_files, mnist_extractor, cache_dir) -> None:
    from torchmetrics.image.fid import FrechetInceptionDistance

    real = mnist_files.split("test")[0]
    fake = perturb(mnist_files.split("train")[0][:100], "noise", 0.1)
    ours, protocol = score_samples(
        fake,
        mnist_files,
        "test",
        extractor=mnist_extractor,
        cache_dir=cache_dir,
        options=ScoreOptions(prdc=False),
    )
    reference = FrechetInceptionDistance(feature=TorchmetricsFeature(mnist_extractor))
    reference.update(real, real=True)
    reference.update(fake, real=False)
    assert ours["fid"] == pytest.approx(float(reference.compute()), rel=1e-3)
    assert protocol["n_real"] == len(real) and protocol["n_fake"] == len(fake)
    assert protocol["extractor_sha256"] == mnist_extractor.weights_sha256


def test_torch_fidelity_scores_with_the_registered_extractor(mnist_files, mnist_extractor, cache_dir) -> None:
    """``feature_extractor="genlab-domain"`` in torch-fidelity reproduces the framework's FID, KID and IS."""
    import torch_fidelity

    class Images(torch.utils.data.Dataset):
        def __init__(self, x: torch.Tensor) -> None:
            self.x = x

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int) -> torch.Tensor:
            return self.x[i]

    real = mnist_files.split("test")[0]
    fake = perturb(mnist_files.split("train")[0][:100], "blur", 1.0)
    options = ScoreOptions(prdc=False, authenticity=False, kid_subsets=20, isc_splits=5, seed=3)
    ours, _ = score_samples(fake, mnist_files, "test", extractor=mnist_extractor, options=options)
    theirs = torch_fidelity.calculate_metrics(
        input1=Images(fake),
        input2=Images(real),
        feature_extractor="genlab-domain",
        feature_extractor_weights_path=mnist_extractor.meta["path"],
        fid=True,
        kid=True,
        isc=True,
        kid_subsets=20,
        kid_subset_size=len(real),
        isc_splits=5,
        rng_seed=3,
        cuda=False,
        cache=False,
        save_cpu_ram=True,
        verbose=False,
    )
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-5)
    assert ours["kid"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-5)
    assert ours["is"] == pytest.approx(theirs["inception_score_mean"], rel=1e-5)


def test_kid_over_whole_sets_equals_torch_fidelity_over_all_its_subsets() -> None:
    # Equal set sizes at most the subset size: every subset torch-fidelity draws is the whole of both
    # sets, so the one computation kernel_distance does must give its 100-subset mean; its spread
    # over subsets is not measurable there (torch-fidelity's is 0 by repetition): NaN, null in metrics.json.
    from torch_fidelity.metric_kid import kid_features_to_metric

    fake, real = (torch.from_numpy(a).float() for a in gaussian_draws(300, 300, 16))
    fake = fake + 0.3
    mean, std = kernel_distance(fake, real, subsets=100, subset_size=1000, seed=0)
    theirs = kid_features_to_metric(
        fake, real, kid_subsets=100, kid_subset_size=300, rng_seed=0, verbose=False
    )
    assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6)
    assert mean > 0.01
    assert math.isnan(std) and theirs["kernel_inception_distance_std"] < 1e-6 * mean


def gaussian_draws(n_real: int, n_fake: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_real, dim)), rng.normal(size=(n_fake, dim))


def test_precision_recall_density_coverage_equal_prdc_and_torch_fidelity() -> None:
    from prdc import compute_prdc
    from torch_fidelity.metric_prc import prc_features_to_metric

    real, fake = gaussian_draws(1000, 800, 32)
    for k in (3, 5):
        ours = precision_recall_density_coverage(
            torch.from_numpy(fake), torch.from_numpy(real), pr_k=k, dc_k=k
        )
        reference = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
        for name in ("precision", "recall", "density", "coverage"):
            assert ours[name] == pytest.approx(float(reference[name]), abs=1e-12), (k, name)
    # torch-fidelity's precision/recall (its convention: features_1 generated, k=3).
    theirs = prc_features_to_metric(
        torch.from_numpy(fake),
        torch.from_numpy(real),
        prc_neighborhood=3,
        prc_batch_size=10000,
        verbose=False,
    )
    ours = precision_recall_density_coverage(torch.from_numpy(fake), torch.from_numpy(real), pr_k=3, dc_k=5)
    # torch-fidelity returns float32 shares: equal up to its rounding (one sample would be 1/800).
    assert ours["precision"] == pytest.approx(theirs["precision"], abs=1e-6)
    assert ours["recall"] == pytest.approx(theirs["recall"], abs=1e-6)


def test_precision_recall_density_coverage_of_a_set_with_itself() -> None:
    real, _ = gaussian_draws(500, 0, 8)
    x = torch.from_numpy(real).float()
    scores = precision_recall_density_coverage(x, x, pr_k=3, dc_k=5)
    assert scores["precision"] == scores["recall"] == scores["coverage"] == 1.0


@pytest.mark.slow
def test_precision_recall_density_coverage_reproduce_prdc_published_figures() -> None:
    """prdc's README: 10,000 real and 10,000 fake draws of N(0, I) in 1000-D, k=5 give precision
    0.4772, recall 0.4705, density 1.0555, coverage 0.9735 "(may fluctuate due to randomness)".
    Across draws we measured precision 0.465-0.497, recall 0.474-0.480, density 0.963-1.070 (hubness
    in 1000-D makes it the noisiest), coverage 0.962-0.974; the tolerances cover that spread."""
    real, fake = gaussian_draws(10_000, 10_000, 1000, seed=1)
    scores = precision_recall_density_coverage(
        torch.from_numpy(fake).float(), torch.from_numpy(real).float(), pr_k=5, dc_k=5
    )
    published = {
        "precision": (0.4772, 0.03),
        "recall": (0.4705, 0.03),
        "density": (1.0555, 0.1),
        "coverage": (0.9735, 0.015),
    }
    for name, (value, tolerance) in published.items():
        assert scores[name] == pytest.approx(value, abs=tolerance), (name, scores[name])
