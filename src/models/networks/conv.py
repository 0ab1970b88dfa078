"""DCGAN-style convolutional stacks (Radford et al. 2016), sized from the image size.

``ConvEncoder`` halves the resolution with stride-2 4x4 convolutions down to a ``base x base``
map and flattens it; ``ConvDecoder`` mirrors it with transposed convolutions. The VAE uses them
as encoder/decoder, the DCGAN and WGAN-GP models as critic body/generator.
"""

from __future__ import annotations

from torch import Tensor, nn

from src.models.networks.layers import ConditionalNorm2d, Norm, maybe_spectral_norm, norm_2d
from src.models.networks.resolution import level_width, resolution_plan


class ConvEncoder(nn.Module):
    """Image ``(B, C, S, S)`` -> feature vector ``(B, out_features)``."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        width: int = 64,
        norm: Norm = "batch",
        spectral: bool = False,
        model: str = "conv",
    ) -> None:
        super().__init__()
        base, doublings = resolution_plan(image_size, model)
        layers: list[nn.Module] = []
        c_in = channels
        for level in range(doublings):
            c_out = level_width(width, level)
            first = level == 0
            layers.append(
                maybe_spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=first or norm == "none"), spectral)
            )
            if not first:  # DCGAN: no normalisation on the input layer
                layers.append(norm_2d(norm, c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.out_features = c_in * base * base

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).flatten(1)


class ConvDecoder(nn.Module):
    """Vector ``(B, in_features)`` (+ labels) -> image ``(B, C, S, S)`` (pre-activation).

    With ``num_classes > 0`` and batch norm, every norm is class-conditional.
    """

    def __init__(
        self,
        image_size: int,
        channels: int,
        in_features: int,
        width: int = 64,
        norm: Norm = "batch",
        num_classes: int = 0,
        model: str = "conv",
    ) -> None:
        super().__init__()
        self.base, doublings = resolution_plan(image_size, model)
        self.c0 = level_width(width, doublings - 1)
        self.project = nn.Linear(in_features, self.c0 * self.base * self.base, bias=norm == "none")
        self.norms = nn.ModuleList([ConditionalNorm2d(norm, self.c0, num_classes)])
        self.ups = nn.ModuleList()
        c_in = self.c0
        for level in reversed(range(doublings - 1)):
            c_out = level_width(width, level)
            self.ups.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=norm == "none"))
            self.norms.append(ConditionalNorm2d(norm, c_out, num_classes))
            c_in = c_out
        self.to_image = nn.ConvTranspose2d(c_in, channels, 4, 2, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.project(z).view(-1, self.c0, self.base, self.base)
        h = self.act(self.norms[0](h, y))
        for up, norm in zip(self.ups, self.norms[1:]):
            h = self.act(norm(up(h), y))
        return self.to_image(h)
