"""Stopping a command with SIGTERM (``kill``, a scheduler, ``docker stop``) or SIGINT (Ctrl+C).

:func:`interruptible` (around every task, in ``src.runtime.run``) turns both signals into
:class:`RunInterrupted`, a ``KeyboardInterrupt``: ``except Exception`` blocks let it through, and
Lightning's trainer runs its interrupt path (``on_exception`` callbacks, loggers finalised). The
run record then says ``"status": "interrupted"`` and the process exits with ``128 + signal``
(130 for SIGINT, 143 for SIGTERM), as a shell reports a process the signal killed.

Python's own SIGINT handling raises wherever the main thread happens to be, mid optimizer step
included, and SIGTERM would kill the process without a record. A training loop can do better:
while it defers them (:func:`set_deferring`), a first signal is only recorded, and the loop
raises it at the next batch boundary (:func:`raise_if_interrupted`), where its state is whole and
can be saved (``checkpoints/last.ckpt``, see ``src/callbacks/checkpoint.py``). A second signal
stops at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from src.utils.logging import get_logger

log = get_logger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: int | None = None
_deferring = False


class RunInterrupted(KeyboardInterrupt):
    """A command stopped by a signal. ``at_boundary``: raised between two batches (state whole)."""

    def __init__(self, signum: int, at_boundary: bool = False) -> None:
        super().__init__(f"stopped by {describe(signum)}")
        self.signum = signum
        self.at_boundary = at_boundary


def describe(signum: int) -> str:
    return f"{signal.Signals(signum).name} (signal {signum})"


def exit_code(signum: int) -> int:
    """The shell's status of a process ended by ``signum``: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


def received() -> int | None:
    """The first signal received inside :func:`interruptible`, or ``None``."""
    return _received


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Handles SIGINT and SIGTERM for the block (main thread only; elsewhere Python forbids it),
    then puts the previous handlers back.

    Only a signal with its default disposition is taken: one that is ignored (a background job's
    SIGINT) or that another handler owns stays as it is. submitit's jobs (``hydra/launcher=slurm``
    or ``local``) keep SIGTERM, which submitit bypasses on purpose: SLURM sends it on preemption
    and at the time limit, and the requeueing happens on the signal submitit asked for.
    """
    global _received, _deferring
    _received, _deferring = None, False
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        signum: handler
        for signum, handler in ((s, signal.getsignal(s)) for s in SIGNALS)
        if handler in (signal.SIG_DFL, signal.default_int_handler, None)
    }
    for signum in previous:
        signal.signal(signum, _handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        # The signal belongs to this block: code that runs later in the process (the next task of
        # a sweep, a test) must not find it pending.
        _received, _deferring = None, False


def set_deferring(on: bool) -> None:
    """While on, a first signal is recorded, not raised: the loop raises it at its next safe point
    with :func:`raise_if_interrupted` (so must the caller that turns it off, before going on)."""
    global _deferring
    _deferring = on


def raise_if_interrupted() -> None:
    """Raises :class:`RunInterrupted` if a signal arrived (a safe point of a deferring loop)."""
    if _received is not None:
        raise RunInterrupted(_received, at_boundary=True)


def _handle(signum: int, frame: FrameType | None) -> None:
    global _received
    first = _received is None
    if first:
        _received = signum
    if first and _deferring:
        log.warning(f"{describe(signum)}: stopping after the current batch (send it again to stop now)")
        return
    raise RunInterrupted(signum)
