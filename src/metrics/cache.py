"""Content-keyed files under ``${paths.cache_dir}``: trained extractors and real-data features.

A cache entry is named by a sha256 over everything that determines its content, so a changed
dataset, architecture, recipe or extractor yields a new file instead of a stale hit. Files are
written to a temporary name and renamed into place: a reader (another run, another rank) sees the
whole file or none.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from src.utils.logging import get_logger

log = get_logger(__name__)


def content_key(**parts: Any) -> str:
    """sha256 of the JSON of ``parts`` (sorted keys): the identity of a cache entry."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors of a state dict (names, dtypes, shapes, bytes), independent of file format."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_entry(path: Path) -> dict[str, Any] | None:
    """The payload at ``path``, or ``None`` when it is missing or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        log.warning(f"ignoring unreadable cache file {path} ({type(exc).__name__}); it will be rebuilt")
        return None
    return payload if isinstance(payload, dict) else None
