"""Discriminator-side augmentation for GANs on scarce data: DiffAugment and ADA (``model.augment``).

With a few thousand images or fewer a discriminator memorises its training set: its outputs on real
images run away from those on samples and the generator's gradient stops carrying information. Both
methods here show the discriminator only augmented images during training -- real *and* generated,
in its own update and in the generator's -- through differentiable operations, so the generator's
gradient passes through them. Augmenting the real images alone would teach the generator to draw
the augmentations ("leaking"); augmenting both sides alike lets it match the un-augmented
distribution. Evaluation, sampling, inpainting and membership scores see the networks unaugmented.

Every operation is per image (its own random draw, no statistic over the batch), which is what
per-example clipping under ``privacy=dp`` needs. Images are in the GAN's model range ``[-1, 1]``.

DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training")
    The paper's policy ``color,translation,cutout``, applied to every image with probability 1:
    ``translation`` shifts by a uniform integer number of pixels up to 1/8 of the image in each
    direction, filling with zeros; ``cutout`` zeroes a square of half the image side at a uniform
    centre (clipped at the border); ``color`` -- brightness (+ U(-0.5, 0.5)), saturation (x U(0, 2)
    around the pixel's channel mean) and contrast (x U(0.5, 1.5) around the image mean) -- for RGB
    images only. As in the paper's code, "zero" is the zero of the model range: mid grey.

ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data")
    Each operation is applied to each image independently with probability ``p`` (rotations by an
    arbitrary angle twice, each with ``1 - sqrt(1 - p)``, as in the paper), with the paper's
    parameter distributions. Of the paper's 18 operations this implements the 12 of its default
    ``bgc`` pipeline, with two kinds off unless the data allow them:

    ==========  ==============================================  ==========================================
    group       implemented                                     not implemented / off by default
    ==========  ==============================================  ==========================================
    blit        integer translation (up to 1/8 of the image)    x-flip (``ada_xflip``), 90-degree
                                                                rotations (``ada_rotate``): off, wrong
                                                                for digits and text
    geometric   isotropic scaling (lognormal, std 0.2 log2),    arbitrary rotation (``ada_rotate``)
                anisotropic scaling (0.2), fractional
                translation (normal, std 1/8 of the image)
    colour      brightness (normal, std 0.2), contrast          luma flip, hue rotation and saturation
                (lognormal, std 0.5 log2); RGB only: luma        on greyscale images (a luma flip
                flip, hue rotation, saturation (std 1 log2)     inverts them; the others do nothing)
    filter      --                                              the 4 frequency-band filters
    corruption  --                                              additive noise, cutout
    ==========  ==============================================  ==========================================

    Differences from the paper's pipeline: the geometric warp is one bilinear ``grid_sample`` at
    the image's resolution with reflection padding, without the paper's 2x supersampling and
    wavelet low-pass filters (some aliasing at strong down-scaling); integer translations and flips
    land on pixel centres and stay exact.

    ``p`` starts at 0 and is adjusted every ``interval`` discriminator updates by the overfitting
    heuristic ``r_t = E[sign(D(real))]`` over the real images the discriminator scored since the
    last adjustment (summed across processes): ``p += sign(r_t - target) * images / (kimg * 1000)``,
    clamped to ``[0, 1]``, so ``p`` can go from 0 to 1 in ``kimg`` thousand real images (the paper:
    target 0.6, interval 4, 500 kimg). A critic trained with a Wasserstein loss has no fixed zero (its
    outputs drift as a whole), so :class:`~src.models.gan.GanModule` centres its real outputs at the
    midpoint of the batch's mean real and mean fake output before the sign; for the non-saturating and
    hinge losses 0 is the decision boundary and the sign is taken as in the paper. ``p`` is part of
    the module's ``state_dict`` (checkpoints, resume) and is logged as ``train/ada_p``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.utils.errors import UserError

AugmentKind = Literal["none", "diffaugment", "ada", "auto"]
# ``auto``: DiffAugment on images, nothing on 2-D points (where no augmentation applies). The default
# of the models whose GAN-augmentation study found DiffAugment better beyond the seed spread.
AUTO_ON_IMAGES = "diffaugment"


# ---------------------------------------------------------------------------- DiffAugment's operations
def _uniform(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``n`` draws of U(0, 1) as ``(n, 1, 1, 1)`` float32, one per image."""
    return torch.rand(n, 1, 1, 1, generator=generator, device=device)


def brightness(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Adds U(-0.5, 0.5) to every pixel of an image (one draw per image)."""
    return x + (_uniform(len(x), generator, x.device) - 0.5).to(x.dtype)


def saturation(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Scales each pixel's deviation from its channel mean by U(0, 2)."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(len(x), generator, x.device) * 2).to(x.dtype) + mean


def contrast(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Scales each image's deviation from its own mean by U(0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(len(x), generator, x.device) + 0.5).to(x.dtype) + mean


def shift(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Moves each image's content by ``(dy[i], dx[i])`` whole pixels (down, right), filling with zeros.

    ``dy``, ``dx``: integer tensors ``(n,)``. A gather from the image framed by one row and column of
    zeros (source positions outside the image read the frame), so the gradient reaches every moved
    pixel and no shift size is read back from the device.
    """
    n, _, h, w = x.shape
    framed = F.pad(x, [1, 1, 1, 1])
    rows = (torch.arange(h, device=x.device)[None, :] - dy[:, None] + 1).clamp(0, h + 1)  # (n, h)
    cols = (torch.arange(w, device=x.device)[None, :] - dx[:, None] + 1).clamp(0, w + 1)  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return framed.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def translation(x: Tensor, generator: torch.Generator | None = None, ratio: float = 0.125) -> Tensor:
    """DiffAugment's translation: a uniform integer shift in ``[-r, r]`` pixels per axis,
    ``r = round(ratio * size)`` (1/8: 4 pixels at 28 or 32 px), zero fill."""
    n, _, h, w = x.shape
    ry, rx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-ry, ry + 1, (n,), generator=generator, device=x.device)
    dx = torch.randint(-rx, rx + 1, (n,), generator=generator, device=x.device)
    return shift(x, dy, dx)


def cutout(x: Tensor, generator: torch.Generator | None = None, ratio: float = 0.5) -> Tensor:
    """DiffAugment's cutout: zeroes a ``ratio * size`` square (14x14 at 28 px) centred uniformly in
    the image (the square is clipped where it crosses the border), one per image."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - size_y % 2), (n, 1), generator=generator, device=x.device)
    cx = torch.randint(0, w + (1 - size_x % 2), (n, 1), generator=generator, device=x.device)
    top, left = cy - size_y // 2, cx - size_x // 2
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    inside_rows = (rows >= top) & (rows < top + size_y)  # (n, h)
    inside_cols = (cols >= left) & (cols < left + size_x)  # (n, w)
    keep = ~(inside_rows[:, :, None] & inside_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


class DiffAugment(nn.Module):
    """DiffAugment's ``color,translation,cutout`` policy (colour for 3-channel images only)."""

    kind = "diffaugment"

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.colour = channels == 3

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.colour:
            x = contrast(saturation(brightness(x, generator), generator), generator)
        return cutout(translation(x, generator), generator)

    def extra_repr(self) -> str:
        return f"policy={'color,' if self.colour else ''}translation,cutout"


# ---------------------------------------------------------------------------- ADA
def _eye(n: int, size: int, device: torch.device) -> Tensor:
    return torch.eye(size, device=device).expand(n, size, size).clone()


def _translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    m = _eye(len(tx), 3, tx.device)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    m = _eye(len(sx), 3, sx.device)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate2d(theta: Tensor) -> Tensor:
    m = _eye(len(theta), 3, theta.device)
    cos, sin = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    return m


def _rotate_about(axis: Tensor, theta: Tensor) -> Tensor:
    """4x4 homogeneous rotations by ``theta`` about the unit 3-vector ``axis`` (Rodrigues)."""
    x, y, z = axis
    cos, sin = torch.cos(theta), torch.sin(theta)
    c = 1 - cos
    m = _eye(len(theta), 4, theta.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = x * x * c + cos, x * y * c - z * sin, x * z * c + y * sin
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = y * x * c + z * sin, y * y * c + cos, y * z * c - x * sin
    m[:, 2, 0], m[:, 2, 1], m[:, 2, 2] = z * x * c - y * sin, z * y * c + x * sin, z * z * c + cos
    return m


class AdaptiveAugment(nn.Module):
    """ADA's augmentation pipeline with its adaptive probability ``p`` (see the module docstring).

    The training loop calls ``forward`` on every batch the discriminator scores, :meth:`observe`
    with the discriminator's outputs on the (augmented) real images of each of its updates, and
    :meth:`adjust` when :attr:`due`.
    """

    kind = "ada"
    # The paper's parameter distributions (StyleGAN2-ADA's AugmentPipe defaults).
    XINT_MAX = 0.125
    SCALE_STD = 0.2
    ANISO_STD = 0.2
    XFRAC_STD = 0.125
    BRIGHTNESS_STD = 0.2
    CONTRAST_STD = 0.5
    SATURATION_STD = 1.0

    def __init__(
        self,
        channels: int,
        target: float = 0.6,
        interval: int = 4,
        kimg: float = 500.0,
        xflip: bool = False,
        rotate: bool = False,
    ) -> None:
        super().__init__()
        self.colour = channels == 3
        self.target = float(target)
        self.interval = int(interval)
        self.kimg = float(kimg)
        self.xflip = xflip
        self.rotate = rotate
        # A Python float, stored through get_extra_state: part of the state dict, untouched by
        # dtype casts (bf16-true would round the per-interval steps of ~1e-4 away).
        self.p = 0.0
        # Sum of signs and number of real outputs since the last adjustment: integers on the device,
        # read once per interval. A plain attribute, not a buffer: DDP would overwrite every
        # process's count with the first process's (broadcast_buffers) before they are summed.
        self.signs: Tensor | None = None
        self.observed_updates = 0

    # ------------------------------------------------------------------ p
    def get_extra_state(self) -> dict[str, Any]:
        return {"p": self.p}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.p = float(state["p"])

    def observe(self, real_outputs: Tensor) -> None:
        """Records the signs of one discriminator update's outputs on real images (centred where
        the loss has no fixed zero)."""
        real_outputs = real_outputs.detach().float().flatten()
        if self.signs is None or self.signs.device != real_outputs.device:
            self.signs = torch.zeros(2, dtype=torch.long, device=real_outputs.device)
        self.signs[0] += real_outputs.sign().sum().long()
        self.signs[1] += real_outputs.numel()
        self.observed_updates += 1

    @property
    def due(self) -> bool:
        return self.observed_updates >= self.interval

    def adjust(self, reduce: Callable[[Tensor], Tensor] | None = None) -> float:
        """Moves ``p`` by ``sign(r_t - target) * images / (kimg * 1000)``; ``reduce`` sums the
        statistics across processes (DDP). Returns the new ``p``."""
        if self.signs is None:
            return self.p
        stats = self.signs.clone() if reduce is None else reduce(self.signs.clone())
        total, count = (float(v) for v in stats.tolist())
        self.signs = None
        self.observed_updates = 0
        if count > 0:
            r_t = total / count
            step = math.copysign(1.0, r_t - self.target) if r_t != self.target else 0.0
            self.p = min(max(self.p + step * count / (self.kimg * 1000.0), 0.0), 1.0)
        return self.p

    # ------------------------------------------------------------------ the pipeline
    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.p <= 0.0 or not len(x):
            return x
        dtype = x.dtype
        x = x.float()
        x = self._geometric(x, generator)
        x = self._colour(x, generator)
        return x.to(dtype)

    def _chosen(
        self, n: int, probability: float, generator: torch.Generator | None, device: torch.device
    ) -> Tensor:
        return torch.rand(n, generator=generator, device=device) < probability

    def _geometric(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """One affine warp per image: the inverse map (output -> input coordinates) of the chosen
        operations, in normalised coordinates (the image spans [-1, 1]; images are square)."""
        n, _, h, w = x.shape
        device, p = x.device, self.p

        def draw(shape: tuple[int, ...], normal: bool = False) -> Tensor:
            return (torch.randn if normal else torch.rand)(shape, generator=generator, device=device)

        def pick(value: Tensor, identity: float, probability: float = p) -> Tensor:
            chosen = self._chosen(n, probability, generator, device)
            return torch.where(chosen.view(-1, *([1] * (value.dim() - 1))), value, identity)

        g = _eye(n, 3, device)
        if self.xflip:
            flip = pick(torch.randint(2, (n,), generator=generator, device=device).float(), 0.0)
            g = g @ _scale2d(1 - 2 * flip, torch.ones_like(flip))
        if self.rotate:
            quarter = pick(torch.randint(4, (n,), generator=generator, device=device).float(), 0.0)
            g = g @ _rotate2d(-math.pi / 2 * quarter)
        # Integer translation: whole pixels, up to XINT_MAX of the image (2 / size per pixel here).
        t = pick((draw((n, 2)) * 2 - 1) * self.XINT_MAX, 0.0)
        g = g @ _translate2d(torch.round(t[:, 0] * w) * 2 / w, torch.round(t[:, 1] * h) * 2 / h)
        s = pick(torch.exp2(draw((n,), normal=True) * self.SCALE_STD), 1.0)
        g = g @ _scale2d(1 / s, 1 / s)
        p_rotate = 1 - math.sqrt(max(1 - p, 0.0))
        if self.rotate:
            g = g @ _rotate2d(pick((draw((n,)) * 2 - 1) * math.pi, 0.0, p_rotate))
        s = pick(torch.exp2(draw((n,), normal=True) * self.ANISO_STD), 1.0)
        g = g @ _scale2d(1 / s, s)
        if self.rotate:
            g = g @ _rotate2d(pick((draw((n,)) * 2 - 1) * math.pi, 0.0, p_rotate))
        t = pick(draw((n, 2), normal=True) * self.XFRAC_STD, 0.0)
        g = g @ _translate2d(-t[:, 0] * 2, -t[:, 1] * 2)
        grid = F.affine_grid(g[:, :2, :], list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _colour(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """One 4x4 colour matrix per image (homogeneous RGB), as in the paper's pipeline."""
        n, device, p = len(x), x.device, self.p

        def normal() -> Tensor:
            return torch.randn(n, generator=generator, device=device)

        def pick(value: Tensor, identity: float) -> Tensor:
            return torch.where(self._chosen(n, p, generator, device), value, identity)

        b = pick(normal() * self.BRIGHTNESS_STD, 0.0)
        c = pick(torch.exp2(normal() * self.CONTRAST_STD), 1.0)
        if not self.colour:
            # Greyscale: brightness, then contrast, on the value itself.
            return (x + b.view(-1, 1, 1, 1)) * c.view(-1, 1, 1, 1)
        # Brightness, then contrast (the paper's order): x -> c * (x + b).
        m = _eye(n, 4, device)
        m[:, :3, :3] *= c[:, None, None]
        m[:, :3, 3] = (c * b)[:, None]
        luma = torch.tensor([1.0, 1.0, 1.0, 0.0], device=device) / math.sqrt(3)
        outer = torch.outer(luma, luma)
        flip = pick(torch.randint(2, (n,), generator=generator, device=device).float(), 0.0)
        m = (torch.eye(4, device=device) - 2 * outer * flip.view(-1, 1, 1)) @ m
        theta = pick((torch.rand(n, generator=generator, device=device) * 2 - 1) * math.pi, 0.0)
        m = _rotate_about(luma[:3], theta) @ m
        s = pick(torch.exp2(normal() * self.SATURATION_STD), 1.0)
        m = (outer + (torch.eye(4, device=device) - outer) * s.view(-1, 1, 1)) @ m
        pixels = x.flatten(2)  # (n, 3, h * w)
        return (m[:, :3, :3] @ pixels + m[:, :3, 3:]).view_as(x)

    def extra_repr(self) -> str:
        return (
            f"p={self.p:.4f}, target={self.target}, interval={self.interval}, kimg={self.kimg:g}, "
            f"xflip={self.xflip}, rotate={self.rotate}, colour={'rgb' if self.colour else 'grey'}"
        )


def build_augment(
    kind: AugmentKind,
    *,
    data_kind: str,
    channels: int | None,
    model: str,
    ada_target: float = 0.6,
    ada_interval: int = 4,
    ada_kimg: float = 500.0,
    ada_xflip: bool = False,
    ada_rotate: bool = False,
) -> DiffAugment | AdaptiveAugment | None:
    """The augmentation of ``model.augment`` (``None`` for ``none``, and for ``auto`` on points);
    refuses point data for any other setting."""
    if kind == "auto":
        kind = AUTO_ON_IMAGES if data_kind == "image" and channels is not None else "none"
    if kind == "none":
        return None
    if data_kind != "image" or channels is None:
        raise UserError(
            f"model.augment={kind} augments images, but model={model} is trained "
            "on 2-D points here: set model.augment=none."
        )
    if kind == "diffaugment":
        return DiffAugment(channels)
    return AdaptiveAugment(
        channels, target=ada_target, interval=ada_interval, kimg=ada_kimg, xflip=ada_xflip, rotate=ada_rotate
    )
