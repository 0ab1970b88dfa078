"""Small layers: normalisation choices, conditional batch norm, spectral norm switch."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

Norm = Literal["batch", "layer", "none"]


def maybe_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    return spectral_norm(module) if enabled else module


def norm_2d(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        # GroupNorm with one group normalises each sample on its own: no batch coupling, which the
        # WGAN-GP penalty assumes of the critic.
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def norm_1d(kind: Norm, features: int) -> nn.Module:
    """The ``Norm`` choices for feature vectors (MLP layers)."""
    if kind == "batch":
        return nn.BatchNorm1d(features)
    if kind == "layer":
        return nn.LayerNorm(features)
    return nn.Identity()


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose gain and bias are looked up per class (de Vries et al. 2017; Miyato & Koyama 2018)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.norm(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class ConditionalNorm2d(nn.Module):
    """Plain norm when ``num_classes == 0``, class-conditional batch norm otherwise."""

    def __init__(self, kind: Norm, channels: int, num_classes: int) -> None:
        super().__init__()
        self.conditional = num_classes > 0 and kind == "batch"
        self.norm = (
            ConditionalBatchNorm2d(channels, num_classes) if self.conditional else norm_2d(kind, channels)
        )

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        return self.norm(x, y) if self.conditional else self.norm(x)


class ProjectionHead(nn.Module):
    """Critic output ``w . h + b``, plus ``embed(y) . h`` for class-conditional critics (Miyato & Koyama 2018)."""

    def __init__(self, features: int, num_classes: int, spectral: bool) -> None:
        super().__init__()
        self.linear = maybe_spectral_norm(nn.Linear(features, 1), spectral)
        self.embed = None
        if num_classes > 0:
            embed = nn.Embedding(num_classes, features)
            # nn.Embedding starts at N(0, 1), ~90x the scale of the linear head's weights: Adam's
            # fixed-size steps then barely turn the class directions and the critic, hence the
            # generator, learns to ignore the label. Xavier puts both on the same scale.
            nn.init.xavier_uniform_(embed.weight)
            self.embed = maybe_spectral_norm(embed, spectral)

    def forward(self, h: Tensor, y: Tensor | None) -> Tensor:
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional critic needs labels")
            out = out + (self.embed(y) * h).sum(dim=1)
        return out


def one_hot(y: Tensor | None, num_classes: int, dtype: torch.dtype) -> Tensor | None:
    if num_classes == 0:
        return None
    if y is None:
        raise ValueError("a conditional network needs labels")
    return nn.functional.one_hot(y, num_classes).to(dtype)
