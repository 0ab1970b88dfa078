"""The one pixel quantiser: scores and exports see the same ``uint8`` images.

A score computed during training and one computed on an exported PNG set are comparable only if
both quantise generated ``[0, 1]`` floats identically; every such conversion goes through here.
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_uint8(images: Tensor) -> Tensor:
    """``[0, 1]`` floats -> ``uint8``, rounded to nearest, exactly as PNG exports store them."""
    return (images * 255.0).round().clamp(0, 255).to(torch.uint8)
