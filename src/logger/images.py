"""Figures written by reports, sent to the loggers that take images (W&B, TensorBoard)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def log_figure(loggers: list, key: str, path: str | Path, step: int = 0) -> None:
    """Logs the PNG at ``path`` under ``key``; loggers without image support (CSV) are skipped."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    for logger in loggers:
        if hasattr(logger, "log_image"):  # W&B
            logger.log_image(key=key, images=[array], step=step)
        elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoard
            logger.experiment.add_image(key, array, global_step=step, dataformats="HWC")
