"""Run assembly: compose -> check -> build -> run, shared by every entry point.

Sits above the feature packages (``data``, ``models``, ``hardware``, ``metrics``, ``callbacks``,
``logger``, ``export``) and below the entry points (``src/*.py``); see docs/architecture.md.
"""
