"""Exceptions that carry a message meant for the user rather than a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad option, missing file, impossible model/data pair).

    Entry points report it as one line starting with ``Error:`` and exit with code 2. The message
    must say what to change.
    """


class TrainingFailure(Exception):
    """Training stopped for a reason that is not a config mistake (for example a NaN loss).

    The run is recorded as failed in ``metrics.json``; the last good checkpoint is kept.
    """
