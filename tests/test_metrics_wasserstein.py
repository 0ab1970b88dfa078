"""Wasserstein distances and the detection test against POT, scipy and closed forms."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import scipy.ndimage
import scipy.stats
import torch

from src.metrics.detection import detection_auc
from src.metrics.wasserstein import (
    GAUSSIAN_5X5,
    exact_wasserstein,
    laplacian_pyramid,
    pixel_swd,
    pyr_down,
    pyr_up,
    pyramid_descriptors,
    pyramid_sizes,
    sliced_wasserstein,
)


@pytest.mark.parametrize("p", [1, 2])
def test_sliced_wasserstein_is_the_mean_over_its_projections_of_the_exact_1d_distance(p: int) -> None:
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(30, 5)))
    y = torch.tensor(rng.normal(loc=0.5, size=(45, 5)))
    directions = ot.sliced.get_random_projections(5, 20, seed=3)  # (d, n), POT's draw for seed 3
    per_direction = []
    for k in range(directions.shape[1]):
        a, b = x.numpy() @ directions[:, k], y.numpy() @ directions[:, k]
        cost = np.abs(a[:, None] - b[None, :]) ** p
        per_direction.append(ot.emd2(ot.unif(len(a)), ot.unif(len(b)), cost))
    expected = float(np.mean(per_direction)) ** (1 / p)
    assert sliced_wasserstein(x, y, n_projections=20, seed=3, p=p) == pytest.approx(expected, rel=1e-6)


def test_sliced_wasserstein_of_1d_sets_is_their_wasserstein_distance() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.exponential(size=200), rng.normal(size=150)
    expected = scipy.stats.wasserstein_distance(a, b)
    swd = sliced_wasserstein(torch.tensor(a)[:, None], torch.tensor(b)[:, None], n_projections=3, seed=0, p=1)
    assert swd == pytest.approx(expected, rel=1e-9)


def test_exact_wasserstein_of_a_translated_set_is_the_translation_length() -> None:
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([3.0, -4.0])
    assert exact_wasserstein(x, x + shift, 1) == pytest.approx(5.0, rel=1e-9)
    assert exact_wasserstein(x, x + shift, 2) == pytest.approx(5.0, rel=1e-9)
    y = torch.randn(300, 2, generator=torch.Generator().manual_seed(1)) * 2
    w1, w2 = exact_wasserstein(x, y, 1), exact_wasserstein(x, y, 2)
    assert 0 < w1 <= w2
    expected = ot.emd2(
        ot.unif(200), ot.unif(300), ot.dist(x.double().numpy(), y.double().numpy(), "euclidean")
    )
    assert w1 == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------------------ pixel SWD
def _reference_pyr_down(batch: np.ndarray) -> np.ndarray:
    """Karras et al.'s reference code (progressive_growing_of_gans, metrics/sliced_wasserstein.py)."""
    kernel = GAUSSIAN_5X5.double().numpy()[None, None]
    return scipy.ndimage.convolve(batch, kernel, mode="mirror")[:, :, ::2, ::2]


def _reference_pyr_up(batch: np.ndarray) -> np.ndarray:
    n, c, h, w = batch.shape
    out = np.zeros((n, c, 2 * h, 2 * w), batch.dtype)
    out[:, :, ::2, ::2] = batch
    return scipy.ndimage.convolve(out, GAUSSIAN_5X5.double().numpy()[None, None] * 4.0, mode="mirror")


def test_pyramid_matches_the_reference_code_and_reconstructs_the_image() -> None:
    images = torch.rand(3, 2, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    down = pyr_down(images)
    np.testing.assert_allclose(down.numpy(), _reference_pyr_down(images.numpy()), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pyr_up(down).numpy(), _reference_pyr_up(down.numpy()), rtol=1e-12, atol=1e-12)
    levels = laplacian_pyramid(images, 2)
    assert [tuple(level.shape[-2:]) for level in levels] == [(28, 28), (14, 14)]
    torch.testing.assert_close(levels[0] + pyr_up(levels[1]), images.float(), rtol=0, atol=1e-5)
    assert pyramid_sizes(28) == [28, 14] and pyramid_sizes(64) == [64, 32, 16] and pyramid_sizes(8) == []


def test_pixel_swd_levels_are_progan_sliced_w1_of_normalised_patches() -> None:
    generator = torch.Generator().manual_seed(0)
    real = (torch.rand(40, 1, 28, 28, generator=generator) * 255).to(torch.uint8)
    fake = (torch.rand(40, 1, 28, 28, generator=generator) ** 3 * 255).to(torch.uint8)
    a, b = pyramid_descriptors(fake, 8, seed=1), pyramid_descriptors(real, 8, seed=2)
    for descriptors in (a, b):
        for level in descriptors.levels.values():
            torch.testing.assert_close(level.mean(0), torch.zeros(level.shape[1]), atol=0.5, rtol=0)
    scores = pixel_swd(a, b, n_projections=16, seed=5)
    assert set(scores) == {"swd_pixel", "swd_pixel_28", "swd_pixel_14"}
    # ProGAN's sliced_wasserstein: mean over directions of mean |sorted A - sorted B| (equal sizes).
    directions = ot.sliced.get_random_projections(49, 16, seed=5)
    for size in (28, 14):
        pa = np.sort(a.levels[size].double().numpy() @ directions, axis=0)
        pb = np.sort(b.levels[size].double().numpy() @ directions, axis=0)
        assert scores[f"swd_pixel_{size}"] == pytest.approx(1e3 * np.abs(pa - pb).mean(), rel=1e-6)
    assert scores["swd_pixel"] == pytest.approx((scores["swd_pixel_28"] + scores["swd_pixel_14"]) / 2)
    same = pixel_swd(pyramid_descriptors(real, 8, seed=3), b, n_projections=16, seed=5)
    assert same["swd_pixel"] < scores["swd_pixel"]


# ------------------------------------------------------------------------------ detection
def test_detection_auc_of_two_gaussians_is_the_closed_form() -> None:
    # N(0, I) vs N(mu e1, I): the best classifier is linear, with AUC = Phi(|mu| / sqrt 2).
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(4000, 5, generator=generator)
    fake = torch.randn(4000, 5, generator=generator)
    fake[:, 0] += 1.0
    expected = scipy.stats.norm.cdf(1.0 / math.sqrt(2))
    assert detection_auc(fake, real, seed=0) == pytest.approx(expected, abs=0.03)
    same = torch.randn(4000, 5, generator=generator)
    assert detection_auc(same, real, seed=0) == pytest.approx(0.5, abs=0.04)
    assert detection_auc(real + 10.0, real, seed=0, classifier="mlp") > 0.99
