"""Callbacks (``conf/callbacks/``)."""

from src.callbacks.checkpoint import LastCheckpoint
from src.callbacks.collapse import CollapseGuard
from src.callbacks.divergence import DivergenceGuard
from src.callbacks.history import ScoreHistory
from src.callbacks.samples import SampleGrid

__all__ = ["CollapseGuard", "DivergenceGuard", "LastCheckpoint", "SampleGrid", "ScoreHistory"]
