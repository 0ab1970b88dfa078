"""Hydra entry points whose config mistakes end in one ``Error:`` line.

Hydra reports composition errors (``model=foo``, ``model.latnt_dim=1``, bad override syntax) as a
multi-line block and exit code 1. The contract is one line starting with ``Error:`` and exit code
2, so :func:`hydra_task` swaps Hydra's reporter for the duration of the call. With
``HYDRA_FULL_ERROR=1`` the original exception and its traceback come through unchanged.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra._internal import utils as hydra_internal_utils
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from src.metrics import registry
from src.runtime.run import TaskResult, report_error, run_task
from src.utils.errors import UserError
from src.utils.logging import quiet_library_noise
from src.utils.paths import CONFIG_DIR as _CONFIG_DIR

CONFIG_DIR = str(_CONFIG_DIR)


def register_resolvers() -> None:
    """Config resolvers that read the table of scores (``src.metrics.registry``).

    ``${score.direction:${optimized_metric}}`` is Optuna's ``minimize``/``maximize`` for a score
    (the ``hparams_search`` configs' ``direction``), ``${score.worst:...}`` the objective penalty of
    a failed trial (+1e9 or -1e9), ``${score.mode:<name>}`` Lightning's ``min``/``max`` and
    ``${score.monitor_mode:<monitor>,<given mode>}`` that of a monitoring callback.
    """
    OmegaConf.register_new_resolver(
        "score.direction", lambda name: registry.direction(name, "optimized_metric"), replace=True
    )
    OmegaConf.register_new_resolver("score.mode", lambda name: registry.mode(name, "monitor"), replace=True)
    OmegaConf.register_new_resolver("score.worst", _worst, replace=True)
    OmegaConf.register_new_resolver("score.monitor_mode", _monitor_mode, replace=True)


def _monitor_mode(monitor: str | None, given: str | None = None) -> str:
    """A monitoring callback's ``mode``: the given one, else the table's. ``min`` stands in while
    the monitor is still ``auto`` (or null, where Lightning ignores it); the run assembly settles
    and checks both before any callback is built (``src.runtime.build.resolve_monitors``)."""
    if given is not None:
        return given
    row = registry.lookup(monitor) if monitor and monitor != "auto" else None
    return (row.mode if row is not None else None) or "min"


def _worst(name: str) -> float:
    """What a failed trial returns to a search over ``name``: worse than any real value."""
    return 1.0e9 if registry.direction(name, "optimized_metric") == "minimize" else -1.0e9


register_resolvers()


def hydra_task(config_name: str) -> Callable[[Callable[[DictConfig], TaskResult]], Callable[[], Any]]:
    """Turns ``task(cfg) -> TaskResult`` into a command-line entry point composed from ``conf/``."""

    def decorator(task: Callable[[DictConfig], TaskResult]) -> Callable[[], Any]:
        @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)
        def hydra_main(cfg: DictConfig) -> float | None:
            return run_task(task, cfg)

        @functools.wraps(task)
        def main() -> Any:
            quiet_library_noise()
            original = hydra_internal_utils.run_and_report
            hydra_internal_utils.run_and_report = functools.partial(_run_and_report, original)
            try:
                return hydra_main()
            finally:
                hydra_internal_utils.run_and_report = original

        return main

    return decorator


def _run_and_report(original: Callable[[Any], Any], func: Callable[[], Any]) -> Any:
    try:
        return func()
    except (HydraException, OmegaConfBaseException) as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        # A resolver's own mistake report (e.g. an optimized_metric outside the table of scores).
        cause = _user_error_cause(exc)
        report_error(str(cause) if cause is not None else hydra_error_message(exc))
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("HYDRA_FULL_ERROR") != "1" and _no_slurm_here(exc):
            report_error(
                "hydra/launcher=slurm needs a SLURM cluster, but srun cannot be found on this machine: submit "
                "from a SLURM login node, or run the same jobs here with hydra/launcher=local (submitit, one "
                "process per job) or with Hydra's default launcher (no hydra/launcher override)."
            )
            sys.exit(2)
        group_value = (
            _group_value_message(str(exc))
            if isinstance(exc, ValueError) and os.environ.get("HYDRA_FULL_ERROR") != "1"
            else None
        )
        if group_value is not None:
            report_error(group_value)
            sys.exit(2)
        # Anything else is not a config mistake: Hydra's own report (a trimmed traceback).
        error = exc

        def reraise() -> Any:
            raise error

        return original(reraise)


def _group_value_message(text: str) -> str | None:
    """``fill=500``: Hydra refuses a number for a config group with a message that names no key."""
    if "Config group override must be a string" not in text:
        return None
    for arg in sys.argv[1:]:
        key, _, value = arg.partition("=")
        group = key.lstrip("+~")
        if value and (Path(CONFIG_DIR) / group).is_dir():
            try:
                float(value)
            except ValueError:
                continue
            options = ", ".join(sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml")))
            hint = f" {GROUP_HINTS[group]}" if group in GROUP_HINTS else ""
            return f"{arg}: {group} is a config group, its options are {options}.{hint}"
    return None


def _user_error_cause(exc: BaseException) -> UserError | None:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, UserError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def hydra_error_message(exc: BaseException) -> str:
    """Folds Hydra's multi-line composition report into one line (without the search path).

    A mistyped key (``model.latnt_dim=8``) gets the closest existing keys instead of Hydra's
    advice to append it with ``+``, which would only move the mistake into the model's constructor.
    """
    cause = exc.__cause__
    suggestion = _unknown_key_suggestion(cause) or _group_value_message(str(exc))
    if suggestion is not None:
        return suggestion
    text = str(exc)
    if isinstance(cause, OmegaConfBaseException):
        text = f"{text} {getattr(cause, 'msg', None) or cause}"
    lines = []
    for line in text.splitlines():
        if line.strip().startswith(("Config search path", "full_key:", "object_type=", "reference_type=")):
            continue
        if line.strip().startswith(("provider=", "path=")):
            continue
        lines.append(line.strip())
    missing = re.search(r"Could not find '([\w/]+)/([^'/]+)'", text)
    if missing and missing.group(1) in GROUP_HINTS:
        lines.append(GROUP_HINTS[missing.group(1)])
    return " ".join(part for part in lines if part)


# What a group option that does not exist most likely meant (a form the group used to take).
GROUP_HINTS = {
    "fill": "fill=balance fills every class up to the largest, fill=balance fill.target=N up to N images per class.",
}


def _unknown_key_suggestion(cause: BaseException | None) -> str | None:
    if not isinstance(cause, ConfigKeyError | ConfigAttributeError) or not isinstance(
        cause.parent_node, DictConfig
    ):
        return None
    key, full_key = str(cause.key), str(cause.full_key)
    if not full_key.endswith(key):
        return None
    group = Path(CONFIG_DIR) / full_key.replace(".", "/")
    if full_key in GROUP_HINTS and group.is_dir():
        # `fill.gate=filter` without `fill=balance`: an optional group's keys exist once an option is chosen.
        options = "|".join(sorted(p.stem for p in group.glob("*.yaml")))
        return f"{full_key} is a config group with no option chosen: choose one ({full_key}={options}) to set its keys."
    known = [str(k) for k in cause.parent_node]
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    prefix = full_key[: -len(key)]
    hint = (
        f"did you mean {' or '.join(prefix + c for c in close)}?"
        if close
        else f"options there: {', '.join(known)}."
    )
    return f"{full_key} is not an option: {hint}"


def _no_slurm_here(exc: BaseException) -> bool:
    # submitit's SLURM executor refuses a machine without SLURM with this RuntimeError, raised
    # when the launcher builds its executor, before any job is submitted.
    return isinstance(exc, RuntimeError) and 'Could not detect "srun"' in str(exc)
