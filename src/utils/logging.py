"""Rank-aware logging: in multi-process runs only global rank 0 speaks unless asked otherwise."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.utilities import rank_zero_only


class RankedLogger(logging.LoggerAdapter):
    """A logger whose records are emitted on rank 0 only (``rank_zero_only=False`` logs on every
    rank, prefixed with the rank)."""

    def __init__(self, name: str = __name__, rank_zero_only: bool = True) -> None:
        super().__init__(logging.getLogger(name), {})
        self.rank_zero_only = rank_zero_only

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        rank = getattr(rank_zero_only, "rank", 0)
        if self.rank_zero_only and rank != 0:
            return
        if not self.rank_zero_only:
            msg = f"[rank {rank}] {msg}"
        msg, kwargs = self.process(msg, kwargs)
        self.logger.log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
        return msg, dict(kwargs)


def get_logger(name: str) -> RankedLogger:
    return RankedLogger(name)


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def quiet_library_noise() -> None:
    """Silences library messages that are expected here and say nothing to a user of this framework."""
    import warnings

    # Data modules serve batches and models map them to their range: both hooks are intended.
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropMessages("litlogger"))
