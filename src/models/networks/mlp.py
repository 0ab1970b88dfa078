"""MLP generator and discriminator for low-dimensional point data (the toy 2-D mixtures)."""

from __future__ import annotations

from torch import Tensor, nn

from src.models.networks.layers import Norm, ProjectionHead, maybe_spectral_norm, norm_1d


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
