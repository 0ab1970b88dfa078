"""DDP that relaunches its worker processes with the current Hydra job's own config.

Lightning starts DDP workers by re-running the command line. Under a Hydra multirun that
re-runs the whole sweep in every worker (Lightning issue #11300): workers then train other
jobs' configs and write into other job directories. :class:`HydraDDPStrategy` starts each
worker as a single run of *this* job: its overrides, its output directory, no ``.hydra``
rewrite. The same command serves plain runs, sweeps and Optuna trials.

A multirun also runs its jobs one after another in one process: the launch of job ``k`` leaves
``LOCAL_RANK``, ``MASTER_PORT``, ... in the environment and the process group initialised, which
would make job ``k + 1`` believe its workers already exist. A new strategy in the process that
launched the previous job's workers first undoes that.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
from lightning.pytorch.strategies import DDPStrategy, Strategy, StrategyRegistry
from lightning.pytorch.strategies.launchers import subprocess_script
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher


def hydra_job_command(local_rank: int) -> tuple[list[str], str]:
    """The command line that runs the current Hydra job (only) as DDP worker ``local_rank``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    import __main__

    hydra_cfg = HydraConfig.get()
    spec = getattr(__main__, "__spec__", None)
    if spec is not None:
        command = [sys.executable, "-m", spec.name]
    else:
        command = [sys.executable, os.path.abspath(sys.argv[0])]
    command += ["--config-name", str(hydra_cfg.job.config_name)]
    command += list(hydra_cfg.overrides.task)
    command += [
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
        f"hydra.job.name={hydra_cfg.job.name}_rank{local_rank}",
        "hydra.output_subdir=null",
        "hydra.mode=RUN",
    ]
    return command, get_original_cwd()


_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@dataclass
class _Launch:
    pid: int
    env_before: dict[str, str | None]


_last_launch: _Launch | None = None


def forget_previous_launch() -> None:
    """Restores what launching the previous job's workers changed in this process (see above)."""
    global _last_launch
    if _last_launch is None or _last_launch.pid != os.getpid():
        return
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key, value in _last_launch.env_before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _last_launch = None


class HydraJobLauncher(_SubprocessScriptLauncher):
    """Lightning's subprocess launcher with :func:`hydra_job_command` as the worker command."""

    def _call_children_scripts(self) -> None:
        global _last_launch
        _last_launch = _Launch(os.getpid(), {key: os.environ.get(key) for key in _LAUNCH_ENV})
        # Lightning builds the command with a module-level function; swap it for the call.
        original = subprocess_script._hydra_subprocess_cmd
        subprocess_script._hydra_subprocess_cmd = hydra_job_command
        try:
            super()._call_children_scripts()
        finally:
            subprocess_script._hydra_subprocess_cmd = original


class HydraDDPStrategy(DDPStrategy):
    """``DDPStrategy`` whose workers run the current Hydra job (see module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        forget_previous_launch()
        super().__init__(*args, **kwargs)

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if isinstance(self._launcher, _SubprocessScriptLauncher):
            self._launcher = HydraJobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)


def search_unused_parameters(strategy: str | Strategy) -> str | Strategy:
    """``strategy`` with DDP's ``find_unused_parameters=True`` (other strategies unchanged).

    For models whose backward passes each reach only part of the parameters (a GAN's
    discriminator update does not reach the generator, its generator update freezes the
    discriminator): with ``find_unused_parameters=False`` DDP's reducer waits for a gradient of
    every parameter and fails. The search marks the parameters a backward pass cannot reach as
    ready at its start, at the cost of one traversal of the autograd graph per backward.
    """
    if isinstance(strategy, DDPStrategy):
        strategy._ddp_kwargs["find_unused_parameters"] = True
    elif isinstance(strategy, str) and strategy.startswith("ddp"):
        name = strategy.removesuffix("_find_unused_parameters_false").removesuffix(
            "_find_unused_parameters_true"
        )
        if f"{name}_find_unused_parameters_true" in StrategyRegistry:
            return f"{name}_find_unused_parameters_true"
    return strategy
