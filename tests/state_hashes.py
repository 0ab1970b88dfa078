"""Test-only callback: each DDP rank records what must agree (weights) and what must not (noise).

Used through the real command line as ``+callbacks.state_hashes._target_=tests.state_hashes.StateHashes``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch


def parameter_hash(module: torch.nn.Module) -> str:
    """Hash of the parameters. Buffers are left out: batch-norm statistics are per-rank between
    DDP's broadcasts (and so are the EMA's averages of them)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.named_parameters()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class StateHashes(pl.Callback):
    """Writes ``<dirpath>/rank<r>.json``: weight hashes at fit start and end, and the noise state."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.record: dict[str, Any] = {}

    def _hashes(self, pl_module: Any) -> dict[str, str]:
        parts = {"generator": pl_module.generator, "discriminator": pl_module.discriminator}
        if pl_module.generator_ema is not None:
            parts["generator_ema"] = pl_module.generator_ema
        return {name: parameter_hash(module) for name, module in parts.items()}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if "start" not in self.record:  # after the module's on_train_start has seeded the noise
            self.record["start"] = self._hashes(pl_module)
            state = pl_module.noise_generator.get_state().numpy().tobytes()
            self.record["noise_state"] = hashlib.sha256(state).hexdigest()
            self.record["start_step"] = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.record["end"] = self._hashes(pl_module)
        self.record["end_step"] = trainer.global_step
        self.dirpath.mkdir(parents=True, exist_ok=True)
        (self.dirpath / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.record))
