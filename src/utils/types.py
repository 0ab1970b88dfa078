"""Constrained types for constructor signatures; ``config_check`` enforces them before a run."""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Gt, Le, Lt

PositiveInt = Annotated[int, Gt(0)]
NonNegativeInt = Annotated[int, Ge(0)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
Fraction = Annotated[float, Gt(0), Lt(1)]
# A share that may be 0 or 1 (a threshold on a share: 0 turns a check off, 1 demands every item).
UnitInterval = Annotated[float, Ge(0), Le(1)]
