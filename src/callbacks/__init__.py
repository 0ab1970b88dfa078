"""Callbacks (``conf/callbacks/``)."""

from src.callbacks.divergence import DivergenceGuard
from src.callbacks.samples import SampleGrid

__all__ = ["DivergenceGuard", "SampleGrid"]
