"""Which image sizes the up/down-sampling stacks can produce."""

from __future__ import annotations

from src.utils.errors import UserError

MIN_BASE, MAX_BASE, MIN_DOUBLINGS = 4, 7, 2
MAX_WIDTH_MULT = 8


def resolution_plan(image_size: int, model: str) -> tuple[int, int]:
    """Splits ``image_size`` into ``base * 2**n`` (4 <= base <= 7, n >= 2).

    The stacks start (or end) at a ``base x base`` feature map and double (halve) it ``n`` times:
    28 = 7 * 2**2, 32 = 4 * 2**3, 64 = 4 * 2**4.
    """
    size, doublings = int(image_size), 0
    while size > MAX_BASE and size % 2 == 0:
        size //= 2
        doublings += 1
    if not (MIN_BASE <= size <= MAX_BASE) or doublings < MIN_DOUBLINGS:
        raise UserError(
            f"model={model} cannot produce {image_size}x{image_size} images: image_size must be b*2^n with "
            f"4<=b<=7 and n>=2 (e.g. 28, 32, 48, 64, 128). Set data.image_size to such a size."
        )
    return size, doublings


def level_width(base_width: int, level: int) -> int:
    """Channels ``level`` halvings away from full resolution: doubling per level, capped at 8x."""
    return base_width * min(2**level, MAX_WIDTH_MULT)
