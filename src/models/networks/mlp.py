"""MLP generators and discriminators: for low-dimensional point data (the toy 2-D mixtures), and
for flattened images (``arch=mlp``, the fully-connected GAN of Goodfellow et al. 2014)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from src.models.networks.layers import Norm, ProjectionHead, maybe_spectral_norm, norm_1d, one_hot


class MlpGenerator(nn.Module):
    """``z (B, latent_dim)`` -> point ``(B, out_dim)``: ``depth`` hidden layers of ``width`` units."""

    def __init__(self, latent_dim: int, out_dim: int, width: int, depth: int, norm: Norm = "batch") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        features = latent_dim
        for _ in range(depth):
            layers += [nn.Linear(features, width, bias=norm == "none"), norm_1d(norm, width), nn.ReLU()]
            features = width
        layers.append(nn.Linear(features, out_dim))
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.body(z)


class MlpDiscriminator(nn.Module):
    """Point ``(B, in_dim)`` -> one logit per point."""

    def __init__(
        self, in_dim: int, width: int, depth: int, norm: Norm = "none", spectral: bool = False
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        features = in_dim
        for _ in range(depth):
            linear = nn.Linear(features, width, bias=norm == "none")
            layers += [maybe_spectral_norm(linear, spectral), norm_1d(norm, width), nn.LeakyReLU(0.2)]
            features = width
        self.body = nn.Sequential(*layers)
        self.head = ProjectionHead(features, 0, spectral)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.head(self.body(x), None)


def image_mlp_widths(width: int, depth: int) -> list[int]:
    """Hidden widths of the image generator, doubling per layer: 256, 512, 1024 for (256, 3); the
    discriminator uses them in reverse."""
    return [width * 2**level for level in range(depth)]


class MlpImageGenerator(nn.Module):
    """``z`` (+ one-hot class) -> fully-connected layers of doubling width -> image ``(B, C, S, S)``
    in ``[-1, 1]`` (tanh). LeakyReLU(0.2) between layers."""

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        width: int,
        depth: int,
        norm: Norm,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.shape = (channels, image_size, image_size)
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        features = latent_dim + num_classes
        for hidden in image_mlp_widths(width, depth):
            layers += [
                nn.Linear(features, hidden, bias=norm == "none"),
                norm_1d(norm, hidden),
                nn.LeakyReLU(0.2),
            ]
            features = hidden
        layers.append(nn.Linear(features, channels * image_size * image_size))
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        labels = one_hot(y, self.num_classes, z.dtype)
        h = z if labels is None else torch.cat([z, labels], dim=1)
        return self.body(h).view(-1, *self.shape).tanh()


class MlpImageDiscriminator(nn.Module):
    """Flattened image -> fully-connected layers of halving width -> one logit (projection head for
    class-conditional critics). LeakyReLU(0.2) between layers."""

    def __init__(
        self,
        channels: int,
        image_size: int,
        width: int,
        depth: int,
        norm: Norm,
        spectral: bool,
        num_classes: int,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        features = channels * image_size * image_size
        for hidden in reversed(image_mlp_widths(width, depth)):
            linear = nn.Linear(features, hidden, bias=norm == "none")
            layers += [maybe_spectral_norm(linear, spectral), norm_1d(norm, hidden), nn.LeakyReLU(0.2)]
            features = hidden
        self.body = nn.Sequential(*layers)
        self.head = ProjectionHead(features, num_classes, spectral)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.head(self.body(x.flatten(1)), y)
