"""The toy 2-D mode-coverage protocol (modes / high-quality fraction / reverse KL)."""

from __future__ import annotations

import math

import pytest
import torch

from src.data.toy2d import MIXTURES, mixture_modes, sample_mixture
from src.metrics.modes import mode_statistics


@pytest.mark.parametrize("mixture", ["ring8", "grid25"])
def test_real_data_captures_every_mode_uniformly(mixture: str) -> None:
    points, _ = sample_mixture(mixture, 2500, torch.Generator().manual_seed(0))
    stats = mode_statistics(points, mixture_modes(mixture), MIXTURES[mixture])
    assert stats["modes"] == len(mixture_modes(mixture))
    assert stats["hq_frac"] > 0.98  # 3 sigma in 2-D holds 98.9% of the mass
    assert stats["rkl"] < 0.02


def test_collapse_to_one_mode_has_maximal_reverse_kl() -> None:
    modes = mixture_modes("ring8")
    samples = modes[3].repeat(100, 1) + 0.001 * torch.randn(100, 2)
    stats = mode_statistics(samples, modes, 0.01)
    assert stats == {"modes": 1.0, "hq_frac": 1.0, "rkl": pytest.approx(math.log(8))}


def test_far_samples_are_not_high_quality_and_capture_nothing() -> None:
    modes = mixture_modes("ring8")
    stats = mode_statistics(torch.full((50, 2), 5.0), modes, 0.01)
    assert stats["modes"] == 0 and stats["hq_frac"] == 0 and stats["rkl"] == pytest.approx(math.log(8))


def test_half_the_modes_evenly_gives_log_two() -> None:
    modes = mixture_modes("ring8")
    samples = modes[::2].repeat_interleave(10, dim=0)
    assert mode_statistics(samples, modes, 0.01)["rkl"] == pytest.approx(math.log(2))
