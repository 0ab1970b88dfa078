"""Where a run executes (``conf/hardware/``): accelerator, devices, strategy, precision."""

from src.hardware.hardware import Hardware
from src.hardware.strategies import HydraDDPStrategy

__all__ = ["Hardware", "HydraDDPStrategy"]
