"""Toy 2-D mixtures for mode-coverage studies (PacGAN protocol): ring of 8 and grid of 25."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import Tensor

from src.data.base import GenerativeDataModule
from src.utils.types import PositiveInt

MIXTURES: dict[str, float] = {"ring8": 0.01, "grid25": 0.05}


def mixture_modes(mixture: str) -> Tensor:
    """The mode centres: 8 points evenly on the unit circle, or the grid {-4,-2,0,2,4}^2."""
    if mixture == "ring8":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return torch.stack([angles.cos(), angles.sin()], dim=1).float()
    if mixture == "grid25":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis)
    raise ValueError(f"unknown mixture {mixture!r}")


def sample_mixture(mixture: str, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` points from the uniform mixture of isotropic Gaussians; returns (points, mode index)."""
    modes = mixture_modes(mixture)
    which = torch.randint(len(modes), (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator) * MIXTURES[mixture]
    return modes[which] + noise, which


class Toy2DDataModule(GenerativeDataModule):
    """Points in R^2 drawn from ``ring8`` (sigma 0.01) or ``grid25`` (sigma 0.05).

    Served as float32 tensors of shape ``(N, 2)``; ``image_size`` and ``channels`` are null and
    ``point_dim`` is 2, which switches GAN networks to MLPs. Labels are the mode indices but the
    data counts as unlabelled (``num_classes=0``).
    """

    kind = "points"
    pixel_range: ClassVar[tuple[float, float]] = (-math.inf, math.inf)

    def __init__(
        self,
        *,
        mixture: Literal["ring8", "grid25"],
        n_train: PositiveInt = 100_000,
        n_val: PositiveInt = 2_500,
        n_test: PositiveInt = 2_500,
        point_dim: Literal[2] = 2,
        **kwargs,
    ) -> None:
        kwargs.update(image_size=None, channels=None, num_classes=0)
        self.name = mixture  # before the base's checks, which name the data
        super().__init__(**kwargs)
        self.mixture = mixture
        self.point_dim = point_dim
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.sigma = MIXTURES[mixture]
        self.modes = mixture_modes(mixture)

    def prepare_data(self) -> None:
        self.data_source = "generated"

    def _load(self) -> dict[str, tuple[Tensor, Tensor]]:
        self.data_source = "generated"
        generator = torch.Generator().manual_seed(self.split_seed)
        return {split: sample_mixture(self.mixture, n, generator) for split, n in self.sizes.items()}
