"""The domain classifier's networks: LeNet-like up to 28 px, a small ResNet above.

Each returns ``(features, logits)``: the penultimate activations serve FID, KID, precision /
recall, density / coverage; the logits serve the Inception Score and pseudo-labels.
"""

from __future__ import annotations

import math
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

ClassifierArch = Literal["auto", "lenet", "resnet"]


class LeNet(nn.Module):
    """LeNet-5's shape with strided 5x5 convolutions instead of pooling (pooling costs more than
    the convolutions on CPUs), batch norm, and a 128-unit penultimate layer (the features)."""

    def __init__(
        self, channels: int, image_size: int, num_outputs: int, width: int = 32, feature_dim: int = 128
    ):
        super().__init__()
        side = math.ceil(math.ceil(image_size / 2) / 2)
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 5, stride=2, padding=2),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 5, stride=2, padding=2),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(2 * width * side * side, feature_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_outputs)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x)
        return features, self.head(self.dropout(features))


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x), inplace=True)


class SmallResNet(nn.Module):
    """Three residual stages (16, 32, 64 channels; ResNet-20's widths, one block each), global
    average pooling and a 128-unit layer (the features, as wide as LeNet's). The stem downsamples
    images of 64 px and more, so 64 px costs about what 32 px does."""

    def __init__(
        self,
        channels: int,
        image_size: int,
        num_outputs: int,
        widths: tuple[int, ...] = (16, 32, 64),
        feature_dim: int = 128,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, widths[0], 3, stride=2 if image_size >= 64 else 1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages, c_in = [], widths[0]
        for i, c_out in enumerate(widths):
            stages.append(_Block(c_in, c_out, stride=1 if i == 0 else 2))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.features = nn.Sequential(nn.Linear(widths[-1], feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_outputs)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.features(self.stages(self.stem(x)).mean(dim=(2, 3)))
        return features, self.head(self.dropout(features))


def resolve_arch(arch: ClassifierArch, image_size: int) -> Literal["lenet", "resnet"]:
    """``auto``: LeNet-like up to 28 px, the small ResNet above."""
    if arch != "auto":
        return arch
    return "lenet" if image_size <= 28 else "resnet"


def build_network(arch: str, channels: int, image_size: int, num_outputs: int) -> nn.Module:
    if arch == "lenet":
        return LeNet(channels, image_size, num_outputs)
    if arch == "resnet":
        return SmallResNet(channels, image_size, num_outputs)
    raise ValueError(f"unknown domain extractor architecture {arch!r}")


def to_input(x: Tensor) -> Tensor:
    """uint8 ``[0, 255]`` -> float ``[-1, 1]``."""
    return x.float() / 127.5 - 1.0
