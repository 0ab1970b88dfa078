"""Callbacks (``conf/callbacks/``)."""

from src.callbacks.checkpoint import LastCheckpoint
from src.callbacks.divergence import DivergenceGuard
from src.callbacks.samples import SampleGrid

__all__ = ["DivergenceGuard", "LastCheckpoint", "SampleGrid"]
