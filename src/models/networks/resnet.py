"""ResNet generator and discriminator in the style of SNGAN (Miyato et al. 2018, appendix B).

Sized from the image size like the DCGAN stacks (``resolution_plan``): the generator starts from a
``base x base`` map and doubles it ``n`` times with up-sampling residual blocks; the
discriminator halves it ``n`` times with down-sampling blocks, then sums ReLU features over
space. Channels follow ``level_width``: widest at the coarsest map.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from src.models.networks.layers import ConditionalNorm2d, Norm, ProjectionHead, maybe_spectral_norm, norm_2d
from src.models.networks.resolution import level_width, resolution_plan


class UpBlock(nn.Module):
    """norm-ReLU-up-conv3-norm-ReLU-conv3, plus a 1x1-conv shortcut of the up-sampled input."""

    def __init__(self, c_in: int, c_out: int, norm: Norm, num_classes: int) -> None:
        super().__init__()
        self.norm1 = ConditionalNorm2d(norm, c_in, num_classes)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.norm2 = ConditionalNorm2d(norm, c_out, num_classes)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = F.interpolate(F.relu(self.norm1(x, y)), scale_factor=2.0)
        h = self.conv2(F.relu(self.norm2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0))


class DownBlock(nn.Module):
    """(ReLU)-conv3-ReLU-conv3-avgpool, plus a 1x1-conv + avgpool shortcut.

    The first block sees raw pixels: no ReLU in front, and the shortcut pools before its
    convolution (SNGAN's "optimized" block).
    """

    def __init__(self, c_in: int, c_out: int, norm: Norm, spectral: bool, first: bool) -> None:
        super().__init__()
        self.first = first
        self.conv1 = maybe_spectral_norm(nn.Conv2d(c_in, c_out, 3, 1, 1), spectral)
        self.norm1 = norm_2d(norm, c_out)
        self.conv2 = maybe_spectral_norm(nn.Conv2d(c_out, c_out, 3, 1, 1), spectral)
        self.norm2 = norm_2d(norm, c_out)
        self.shortcut = maybe_spectral_norm(nn.Conv2d(c_in, c_out, 1), spectral)

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)
        h = self.norm2(self.conv2(F.relu(self.norm1(self.conv1(h)))))
        h = F.avg_pool2d(h, 2)
        if self.first:
            return h + self.shortcut(F.avg_pool2d(x, 2))
        return h + F.avg_pool2d(self.shortcut(x), 2)


class ResNetGenerator(nn.Module):
    """``z`` (+ labels, through conditional batch norm) -> image ``(B, C, S, S)`` in ``[-1, 1]``."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        latent_dim: int,
        width: int,
        norm: Norm = "batch",
        num_classes: int = 0,
        model: str = "resnet",
    ) -> None:
        super().__init__()
        self.base, doublings = resolution_plan(image_size, model)
        self.c0 = level_width(width, doublings)
        self.project = nn.Linear(latent_dim, self.c0 * self.base * self.base)
        self.blocks = nn.ModuleList(
            UpBlock(level_width(width, level + 1), level_width(width, level), norm, num_classes)
            for level in reversed(range(doublings))
        )
        self.out_norm = norm_2d(norm, width)
        self.to_image = nn.Conv2d(width, channels, 3, 1, 1)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.project(z).view(-1, self.c0, self.base, self.base)
        for block in self.blocks:
            h = block(h, y)
        return self.to_image(F.relu(self.out_norm(h))).tanh()


class ResNetDiscriminator(nn.Module):
    """Image (+ labels, through a projection head) -> one logit per image."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        width: int,
        norm: Norm = "none",
        spectral: bool = True,
        num_classes: int = 0,
        model: str = "resnet",
    ) -> None:
        super().__init__()
        _, doublings = resolution_plan(image_size, model)
        self.blocks = nn.Sequential(
            *(
                DownBlock(
                    channels if level == 0 else level_width(width, level),
                    level_width(width, level + 1),
                    norm,
                    spectral,
                    first=level == 0,
                )
                for level in range(doublings)
            )
        )
        self.head = ProjectionHead(level_width(width, doublings), num_classes, spectral)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.head(h, y)
