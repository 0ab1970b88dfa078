"""Where the project lives: the root that ``conf/paths`` resolves every default path against.

``${hydra:runtime.cwd}`` is not available when a multirun launcher resolves ``hydra.sweep.dir``
(Hydra raises "HydraConfig was not set"), nor to Hydra's compose API used from Python. The
checkout's own location is known to every process at import time, so ``${project_root:}``
resolves the same way in single runs, sweeps, launcher workers, DDP workers and notebooks, from
any working directory.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "conf"


def register_resolvers() -> None:
    """Registers ``${project_root:}`` (idempotent)."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))


register_resolvers()
