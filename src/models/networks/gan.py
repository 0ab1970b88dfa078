"""Generator/discriminator pairs for the GAN module, chosen by architecture and data kind.

Every generator maps ``(z, labels)`` to a sample in the model's range (images in ``[-1, 1]``,
points as they are); every discriminator maps ``(x, labels)`` to one logit per sample.
Conditional pairs use class-conditional batch norm in the generator and a projection head
in the discriminator (Miyato & Koyama 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from src.models.networks.conv import ConvDecoder, ConvEncoder
from src.models.networks.layers import Norm, ProjectionHead
from src.models.networks.mlp import MlpDiscriminator, MlpGenerator, MlpImageDiscriminator, MlpImageGenerator
from src.models.networks.resnet import ResNetDiscriminator, ResNetGenerator

# Image architectures; point data always get MLPs (``mlp_width``, ``mlp_depth``). ``mlp`` on images:
# fully-connected networks of doubling (G) / halving (D) width from ``mlp_width`` over ``mlp_depth`` layers.
GanArch = Literal["dcgan", "resnet", "mlp"]


class DcganGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2016): the transposed-convolution stack, then ``tanh``."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        latent_dim: int,
        width: int,
        norm: Norm,
        num_classes: int,
        model: str,
    ) -> None:
        super().__init__()
        self.decoder = ConvDecoder(image_size, channels, latent_dim, width, norm, num_classes, model=model)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.decoder(z, y).tanh()


class DcganDiscriminator(nn.Module):
    """DCGAN discriminator: the strided-convolution stack and a (projection) linear head."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        width: int,
        norm: Norm,
        spectral: bool,
        num_classes: int,
        model: str,
    ) -> None:
        super().__init__()
        self.encoder = ConvEncoder(image_size, channels, width, norm, spectral, model=model)
        self.head = ProjectionHead(self.encoder.out_features, num_classes, spectral)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.head(self.encoder(x), y)


@dataclass(frozen=True)
class GanNetworkSpec:
    """What the networks are built from: the data's shape and the model config's sizes."""

    arch: GanArch
    latent_dim: int
    num_classes: int
    g_width: int
    d_width: int
    g_norm: Norm
    d_norm: Norm
    spectral_norm: bool
    mlp_width: int
    mlp_depth: int
    image_size: int | None = None
    channels: int | None = None
    point_dim: int | None = None
    model: str = "gan"


def build_gan_networks(spec: GanNetworkSpec) -> tuple[nn.Module, nn.Module]:
    """``(generator, discriminator)`` for ``spec``: ``arch`` for images, the MLP pair for points."""
    s = spec
    if s.image_size is None:
        assert s.point_dim is not None
        return (
            MlpGenerator(s.latent_dim, s.point_dim, s.mlp_width, s.mlp_depth, s.g_norm),
            MlpDiscriminator(s.point_dim, s.mlp_width, s.mlp_depth, s.d_norm, s.spectral_norm),
        )
    assert s.channels is not None
    if s.arch == "mlp":
        return (
            MlpImageGenerator(
                s.latent_dim, s.channels, s.image_size, s.mlp_width, s.mlp_depth, s.g_norm, s.num_classes
            ),
            MlpImageDiscriminator(
                s.channels, s.image_size, s.mlp_width, s.mlp_depth, s.d_norm, s.spectral_norm, s.num_classes
            ),
        )
    if s.arch == "resnet":
        return (
            ResNetGenerator(
                s.image_size, s.channels, s.latent_dim, s.g_width, s.g_norm, s.num_classes, s.model
            ),
            ResNetDiscriminator(
                s.image_size, s.channels, s.d_width, s.d_norm, s.spectral_norm, s.num_classes, s.model
            ),
        )
    return (
        DcganGenerator(s.image_size, s.channels, s.latent_dim, s.g_width, s.g_norm, s.num_classes, s.model),
        DcganDiscriminator(
            s.image_size, s.channels, s.d_width, s.d_norm, s.spectral_norm, s.num_classes, s.model
        ),
    )
