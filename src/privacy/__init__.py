"""Differentially private training (``conf/privacy/``): DP-SGD with Opacus, its budget and its record.

See :mod:`src.privacy.engine` for what is private and why the accounting is correct.
"""

from src.privacy.engine import DifferentialPrivacy, planned_updates

__all__ = ["DifferentialPrivacy", "planned_updates"]
