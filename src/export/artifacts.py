"""W&B lineage for exported datasets: checkpoint (model) -> synthetic dataset."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger

from src.utils.logging import get_logger

log = get_logger(__name__)


def log_dataset_artifact(
    loggers: list[Logger], out_dir: Path, manifest: dict[str, Any], ckpt_path: str | Path
) -> None:
    """Logs ``out_dir`` as a ``dataset`` artifact with the manifest as metadata (W&B loggers only).

    Online, the checkpoint is declared as the run's input (a ``model`` artifact referencing the
    file), so the lineage graph shows model -> dataset. Offline, W&B cannot record inputs; the
    dataset artifact is staged in the run directory and ``wandb sync`` uploads it.
    """
    import wandb

    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        run = logger.experiment
        checkpoint = manifest.get("checkpoint", {})
        if not run.offline:
            model = wandb.Artifact(
                name=f"checkpoint-{str(checkpoint.get('sha256', 'unknown'))[:16]}",
                type="model",
                metadata={"path": str(ckpt_path), "sha256": checkpoint.get("sha256")},
            )
            model.add_reference(Path(ckpt_path).resolve().as_uri(), checksum=False)
            run.use_artifact(model)
        dataset = wandb.Artifact(name=artifact_name(out_dir), type="dataset", metadata=_metadata(manifest))
        dataset.add_dir(str(out_dir))
        run.log_artifact(dataset)
        log.info(
            f"W&B: logged dataset artifact {dataset.name} ({'staged offline' if run.offline else 'uploading'})"
        )


def artifact_name(out_dir: Path) -> str:
    """W&B artifact names allow letters, digits, dashes, underscores and dots."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"synthetic-{Path(out_dir).name}").strip("-")


def _metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    # The resolved config is large and nested; the dataset's own facts are what W&B shows and filters on.
    return {k: v for k, v in manifest.items() if k != "config"}
