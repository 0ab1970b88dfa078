"""Run assembly: compose -> check -> build -> run, shared by every entry point.

Sits above the feature packages (``data``, ``models``, ``hardware``, ``metrics``, ``callbacks``,
``logger``, ``export``) and below the entry points (``src/*.py``); see docs/architecture.md.
"""

from src.runtime.build import TrainedRun, load_run

__all__ = ["TrainedRun", "load_run"]
