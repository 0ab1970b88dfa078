"""Wasserstein distances between real and generated sets, through POT (``ot``).

* :func:`sliced_wasserstein`: POT's sliced Wasserstein distance (random directions from a seed),
  used in the extractor's feature space (``val/swd``, p = 2).
* :func:`pixel_swd`: the multi-scale pixel SWD of Karras et al. 2018 (ProGAN): 7x7 patches drawn
  at random from each level of a Laplacian pyramid, each set's patches normalised per channel,
  then the sliced W1 between the sets per level, times 1e3 as published (``val/swd_pixel`` is
  the mean over levels, ``val/swd_pixel_<size>`` each level). Levels run from full size down to
  the smallest size >= 14 (twice the patch; 16 for power-of-two sizes, as in ProGAN).
* :func:`exact_wasserstein`: exact W1 / W2 between point sets by POT's network simplex
  (``ot.emd2``), for toy 2-D data (``val/w1``, ``val/w2``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

PATCH = 7
# Karras et al.'s 5-tap binomial filter, as OpenCV's pyrDown / pyrUp use.
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
GAUSSIAN_5X5 = torch.outer(_BINOMIAL, _BINOMIAL) / 256.0
PIXEL_SWD_SCALE = 1e3


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int, seed: int, p: int = 2) -> float:
    """Sliced W_p between the rows of ``x`` and ``y`` (uniform weights, sizes may differ)."""
    import ot  # POT and what it pulls in (networkx, ~0.4 s) load at the first evaluation

    return float(
        ot.sliced_wasserstein_distance(
            x.detach().cpu().double().numpy(),
            y.detach().cpu().double().numpy(),
            n_projections=n_projections,
            p=p,
            seed=seed,
        )
    )


def exact_wasserstein(x: Tensor, y: Tensor, p: int) -> float:
    """Exact W_p (p = 1 or 2) between point sets with uniform weights, Euclidean ground cost."""
    import ot

    xs, ys = x.detach().cpu().double().numpy(), y.detach().cpu().double().numpy()
    cost = ot.dist(xs, ys, metric="euclidean") ** p
    value = ot.emd2(ot.unif(len(xs)), ot.unif(len(ys)), cost, numItermax=10_000_000)
    return float(value) ** (1.0 / p)


# ---------------------------------------------------------------------------- pixel SWD
def pyramid_sizes(image_size: int, min_size: int = 2 * PATCH) -> list[int]:
    """Image sizes of the Laplacian pyramid levels: halving while at least ``min_size``."""
    sizes, size = [], int(image_size)
    while size >= min_size:
        sizes.append(size)
        size //= 2
    return sizes


def _filter(images: Tensor, kernel: Tensor) -> Tensor:
    channels = images.shape[1]
    weight = kernel.to(images)[None, None].expand(channels, 1, 5, 5)
    # "reflect" is scipy.ndimage's "mirror" (d c b | a b c d), what ProGAN's reference code uses.
    return F.conv2d(F.pad(images, (2, 2, 2, 2), mode="reflect"), weight, groups=channels)


def pyr_down(images: Tensor) -> Tensor:
    """Blur with the 5x5 binomial filter, keep every second pixel (OpenCV's pyrDown)."""
    return _filter(images, GAUSSIAN_5X5)[:, :, ::2, ::2]


def pyr_up(images: Tensor) -> Tensor:
    """Zero-insertion upsampling by 2, then the binomial filter times 4 (OpenCV's pyrUp)."""
    n, c, h, w = images.shape
    up = images.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = images
    return _filter(up, 4.0 * GAUSSIAN_5X5)


def laplacian_pyramid(images: Tensor, levels: int) -> list[Tensor]:
    """Band-pass levels (full size first) and the low-pass residual last; float images."""
    pyramid = [images.float()]
    for _ in range(1, levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyr_up(pyramid[-1])
    return pyramid


@dataclass
class PyramidDescriptors:
    """Normalised patch descriptors of one image set, per pyramid level size."""

    levels: dict[int, Tensor]


def pyramid_descriptors(images: Tensor, patches_per_image: int, seed: int) -> PyramidDescriptors:
    """Descriptors of ``uint8`` (or float) images ``(N, C, S, S)`` at every pyramid level."""
    sizes = pyramid_sizes(images.shape[-1])
    generator = torch.Generator().manual_seed(int(seed))
    out: dict[int, Tensor] = {}
    # Chunks keep the float copies of large sets small; the patch positions stay one seeded stream.
    parts: dict[int, list[Tensor]] = {size: [] for size in sizes}
    for chunk in images.cpu().split(1000):
        for size, level in zip(sizes, laplacian_pyramid(chunk.float(), len(sizes))):
            parts[size].append(_raw_patches(level, patches_per_image, generator))
    for size in sizes:
        out[size] = _normalise(torch.cat(parts[size]))
    return PyramidDescriptors(out)


def _raw_patches(level: Tensor, patches_per_image: int, generator: torch.Generator) -> Tensor:
    """``patches_per_image`` random 7x7 neighbourhoods of every image: ``(N * patches, C, 7, 7)``."""
    n, _, h, w = level.shape
    half = PATCH // 2
    count = n * patches_per_image
    ys = torch.randint(half, h - half, (count,), generator=generator)
    xs = torch.randint(half, w - half, (count,), generator=generator)
    image = torch.arange(n).repeat_interleave(patches_per_image)
    offsets = torch.arange(-half, half + 1)
    rows = (ys[:, None] + offsets)[:, :, None].expand(count, PATCH, PATCH)
    cols = (xs[:, None] + offsets)[:, None, :].expand(count, PATCH, PATCH)
    return level[image[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # (count, C, 7, 7)


def _normalise(patches: Tensor) -> Tensor:
    # Per set and channel, over patches and positions (ProGAN's finalize_descriptors).
    patches = patches - patches.mean(dim=(0, 2, 3), keepdim=True)
    patches = patches / patches.std(dim=(0, 2, 3), keepdim=True, unbiased=False).clamp_min(1e-8)
    return patches.reshape(len(patches), -1)


def pixel_swd(
    fake: PyramidDescriptors, real: PyramidDescriptors, n_projections: int, seed: int
) -> dict[str, float]:
    """``{"swd_pixel": mean, "swd_pixel_<size>": per level}``, sliced W1 x 1e3 (Karras et al.)."""
    levels = {
        f"swd_pixel_{size}": PIXEL_SWD_SCALE
        * sliced_wasserstein(fake.levels[size], real_level, n_projections, seed, p=1)
        for size, real_level in real.levels.items()
    }
    return {"swd_pixel": float(np.mean(list(levels.values()))), **levels}
