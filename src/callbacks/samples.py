"""Writes what the model generates at each validation: image grids, 2-D scatter plots or table rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torchvision.io import ImageReadMode, read_image
from torchvision.utils import make_grid, save_image

from src.callbacks.scatter import save_scatter
from src.utils.types import NonNegativeInt, PositiveInt

SCATTER_POINTS = 2500


class SampleGrid(pl.Callback):
    """Saves ``samples/step_<global step>.png`` at the end of every ``every_n_epochs``-th validation.

    Images: a grid of ``n`` samples from a fixed noise seed (conditional models: classes in
    rows), ``interp_step_<step>.png`` (``interpolations`` rows of latent interpolations) and, for
    models that reconstruct, ``recon_step_<step>.png`` (originals over reconstructions). Point
    data: ``step_<step>.png`` is a scatter plot of generated over real points. Tables:
    ``step_<step>.csv`` holds ``n`` decoded rows. Images also go to each logger that takes images
    (W&B, TensorBoard).
    """

    def __init__(
        self,
        dirpath: str,
        n: PositiveInt = 64,
        every_n_epochs: PositiveInt = 1,
        seed: int = 0,
        interpolations: NonNegativeInt = 4,
    ) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)
        self.n = n
        self.interpolations = interpolations
        self.every_n_epochs = every_n_epochs
        self.seed = seed

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self.write(trainer, pl_module)

    @rank_zero_only
    def write(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        step = trainer.global_step
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        if pl_module.data_kind == "table":
            # A preview a person can read: decoded rows with the table's columns, drawn as the
            # model draws them (its own class frequencies, no rows forced per class).
            rows = pl_module.sample(self.n, generator=generator)
            trainer.datamodule.schema.decode(rows.cpu()).to_csv(
                self.dirpath / f"step_{step:07d}.csv", index=False
            )
            return
        if pl_module.data_kind == "points":
            samples = pl_module.sample(SCATTER_POINTS, generator=generator)
            real = trainer.datamodule.split("val")[0][:SCATTER_POINTS]
            path = self.dirpath / f"step_{step:07d}.png"
            save_scatter(samples.cpu(), real.cpu(), path, title=f"step {step}")
            log_images(trainer, {"scatter": read_image(str(path), ImageReadMode.RGB).float() / 255}, step)
            return
        labels, nrow = _grid_labels(pl_module, self.n)
        samples = pl_module.sample(
            len(labels) if labels is not None else self.n, labels=labels, generator=generator
        )
        images: dict[str, Tensor] = {}
        images["samples"] = make_grid(samples.float().cpu(), nrow=nrow)
        save_image(images["samples"], self.dirpath / f"step_{step:07d}.png")
        if self.interpolations and pl_module.latent_dim:
            steps = 8
            interp = pl_module.interpolate(self.interpolations, steps, generator=generator)
            images["interpolations"] = make_grid(interp.cpu(), nrow=steps)
            save_image(images["interpolations"], self.dirpath / f"interp_step_{step:07d}.png")
        if hasattr(pl_module, "reconstruct"):
            x, y = trainer.datamodule.split("val")
            x, y = x[: self.n // 2].to(pl_module.device), y[: self.n // 2].to(pl_module.device)
            recon = pl_module.reconstruct(pl_module.to_model_range(x), y)
            pair = torch.cat([pl_module.to_unit(pl_module.to_model_range(x)), recon]).float().cpu()
            images["reconstructions"] = make_grid(pair, nrow=len(x))
            save_image(images["reconstructions"], self.dirpath / f"recon_step_{step:07d}.png")
        log_images(trainer, images, step)


def _grid_labels(pl_module: Any, n: int) -> tuple[Tensor | None, int]:
    """Labels and row length of the grid: for conditional models one class per row."""
    classes = pl_module.num_classes
    if not classes:
        return None, max(1, int(n**0.5))
    per_class = max(1, n // classes)
    return torch.arange(classes, device=pl_module.device).repeat_interleave(per_class), per_class


def log_images(trainer: pl.Trainer, images: dict[str, Tensor], step: int) -> None:
    """Sends image tensors ``(C, H, W)`` in ``[0, 1]`` to the loggers that accept images."""
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):  # W&B: one key per kind, since the kinds differ in size
            for name, image in images.items():
                logger.log_image(key=f"samples/{name}", images=[image], step=step)
        elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoard
            for name, image in images.items():
                logger.experiment.add_image(f"samples/{name}", image, global_step=step)
