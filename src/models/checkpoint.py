"""Reading checkpoints written by ``src.train``: a missing or corrupt file is a user mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from src.utils.errors import UserError

# Where the resolved run config (model, data, trainer, ...) sits inside every checkpoint.
CONFIG_KEY = "genlab_run_config"
# The privacy guarantee of the run that wrote it (``privacy=dp``; see src/privacy).
PRIVACY_KEY = "genlab_privacy"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint written by this framework; a missing or corrupt file is a :class:`UserError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(
            f"ckpt_path={path} does not exist: pass the path of a .ckpt file (e.g. <run dir>/checkpoints/best.ckpt)."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:
        raise UserError(
            f"ckpt_path={path} is not a readable checkpoint ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}): "
            "the file is truncated or corrupt; use another checkpoint (last.ckpt or best.ckpt)."
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or not checkpoint.get(CONFIG_KEY):
        raise UserError(
            f"ckpt_path={path} was not written by `src.train` (no state_dict or run config inside)."
        )
    return checkpoint
