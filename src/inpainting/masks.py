"""Masks of missing pixels (True = missing), seeded: the same seed gives the same masks.

* ``center``: a centred square of side ``size`` (default half the image side: 14 at 28 px);
* ``blocks``: ``blocks`` squares of side ``size`` (default a quarter of the side) at random places;
* ``pixels``: each pixel missing with probability ``fraction`` (independently per image);
* ``half``: one half of the image (``side``: left, right, top or bottom).

Masks are per pixel (shape ``(N, 1, H, W)``): every channel of a missing pixel is missing.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from src.utils.errors import UserError

MaskKind = Literal["center", "blocks", "pixels", "half"]
Side = Literal["left", "right", "top", "bottom"]


def make_masks(
    kind: MaskKind,
    n: int,
    image_size: int,
    seed: int = 0,
    size: int | None = None,
    blocks: int = 4,
    fraction: float = 0.5,
    side: Side = "left",
) -> Tensor:
    """``n`` bool masks ``(n, 1, S, S)`` of ``kind`` (see the module docstring)."""
    s = image_size
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, 1, s, s, dtype=torch.bool)
    if kind == "center":
        side_len = size or default_size(kind, s)
        _check_size(side_len, s, "mask_size")
        start = (s - side_len) // 2
        masks[:, :, start : start + side_len, start : start + side_len] = True
    elif kind == "blocks":
        side_len = size or default_size(kind, s)
        _check_size(side_len, s, "mask_size")
        corners = torch.randint(0, s - side_len + 1, (n, blocks, 2), generator=generator)
        for i in range(n):
            for top, left in corners[i].tolist():
                masks[i, :, top : top + side_len, left : left + side_len] = True
    elif kind == "pixels":
        if not 0 < fraction < 1:
            raise UserError(f"mask_fraction={fraction} is invalid: use a fraction strictly between 0 and 1.")
        masks = torch.rand(n, 1, s, s, generator=generator) < fraction
    elif kind == "half":
        half = s // 2
        region = {
            "left": (slice(None), slice(0, half)),
            "right": (slice(None), slice(s - half, s)),
            "top": (slice(0, half), slice(None)),
            "bottom": (slice(s - half, s), slice(None)),
        }[side]
        masks[:, :, region[0], region[1]] = True
    else:
        raise UserError(f"mask={kind} is not a mask: use center, blocks, pixels or half.")
    return masks


def default_size(kind: MaskKind, image_size: int) -> int:
    """The side of the square (``center``: half the image) or of each block (``blocks``: a quarter)."""
    return image_size // 2 if kind == "center" else max(1, image_size // 4)


def mask_settings(
    kind: MaskKind,
    image_size: int,
    size: int | None = None,
    blocks: int = 4,
    fraction: float = 0.5,
    side: Side = "left",
) -> dict[str, int | float | str]:
    """The options ``kind`` uses, with the values it uses (defaults resolved), for the record."""
    if kind == "center":
        return {"size": size or default_size(kind, image_size)}
    if kind == "blocks":
        return {"size": size or default_size(kind, image_size), "blocks": blocks}
    if kind == "pixels":
        return {"fraction": fraction}
    return {"side": side}


def _check_size(size: int, image_size: int, name: str) -> None:
    if not 0 < size < image_size:
        raise UserError(
            f"{name}={size} does not fit {image_size}x{image_size} images: use 1..{image_size - 1}."
        )
