"""Restore missing pixels: ``python -m src.inpaint ckpt_path=... mask=center split=test out_dir=...``.

Loads the model and its data from the checkpoint, masks the images of ``split`` (``center``,
``blocks``, ``pixels`` or ``half``; seeded, saved with the output), fills the masked pixels with
the model (observed pixels are never changed; ``k`` draws per image, whose mean is the point
estimate), scores the fill on the missing pixels next to mean-image and nearest-neighbour
baselines, and the domain classifier's accuracy on original, masked and filled images; writes the
filled images as an export (see :mod:`src.inpainting.pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from src.export.pipeline import export_provenance
from src.export.writer import check_out_dir
from src.inpainting.pipeline import InpaintOptions, inpaint_split
from src.logger import finish_wandb_runs
from src.logger.images import log_figure
from src.runtime.build import build_collection, build_metrics, load_trained_run
from src.runtime.config_check import task_options
from src.runtime.entry import hydra_task
from src.runtime.run import TaskResult
from src.utils.errors import UserError


@dataclass
class InpaintCommandOptions:
    """The top-level keys of ``conf/inpaint.yaml`` besides :class:`InpaintOptions`."""

    task_name: str
    ckpt_path: str
    data_dir: str | None


def inpaint(cfg: DictConfig) -> TaskResult:
    task_options(InpaintCommandOptions, cfg)
    options = task_options(InpaintOptions, cfg)
    check_out_dir(Path(options.out_dir).expanduser(), options.overwrite)
    run = load_trained_run(cfg, cfg.ckpt_path)
    model = run.model.to(run.hardware.device())
    if options.method is not None and options.method not in model.inpaint_methods:
        raise UserError(
            f"method={options.method} is not an inpainting method of model={model.model_name}: use one of "
            f"{', '.join(model.inpaint_methods)} (or null for the default)."
        )
    metrics = next(iter(build_metrics(run.run_cfg, run.datamodule, run.hardware)), None)
    extractor = getattr(metrics, "extractor", None)
    run.datamodule.setup()
    classify = extractor.classify if getattr(extractor, "has_class_logits", False) else None
    loggers = build_collection(cfg.get("logger"))
    failed = True
    try:
        out_dir, manifest = inpaint_split(
            model,
            run.datamodule,
            options,
            export_provenance(run.datamodule, run.run_cfg, cfg.ckpt_path),
            classify,
            extractor.describe() if classify is not None else None,
        )
        metrics_out = flat_scores(manifest["inpainting"]["scores"])
        for logger in loggers:
            logger.log_metrics(metrics_out)
        log_figure(loggers, "inpainting", out_dir.parent / f"{out_dir.name}.preview.png")
        failed = False
    finally:
        finish_wandb_runs(loggers, failed)
    return TaskResult(
        metrics=metrics_out,
        protocol={
            "inpainting": {k: v for k, v in manifest["inpainting"].items() if k != "scores"},
            "out_dir": str(out_dir),
        },
        data_source=run.datamodule.data_source,
        extra={"data": run.datamodule.describe()},
        summary=summary_lines(
            manifest["inpainting"]["scores"], manifest.get("n"), manifest["inpainting"]["k"]
        ),
    )


VERSIONS = ("model", "model_single_draw", "mean_fill", "nearest_neighbour_fill")


def summary_lines(scores: dict, n: int | None, k: int | None = None) -> list[str]:
    """The console table: missing-pixel errors of the model (the mean of its ``k`` draws, and one
    draw) beside both baselines, and the classifier's accuracy on original / masked / filled images."""
    versions = [name for name in VERSIONS if name in scores]
    draws = f"; model = mean of {k} draws per image" if k else ""
    lines = [
        f"inpainting of {n} images (missing pixels only{draws}):",
        f"  {'fill':<24}{'MSE':>9}{'PSNR dB':>9}{'SSIM':>7}",
    ]
    for name in versions:
        row = scores[name]
        ssim = row.get("ssim")
        lines.append(
            f"  {name:<24}{row['mse']:>9.4f}{row['psnr']:>9.2f}{'' if ssim is None else f'{ssim:>7.3f}'}"
        )
    accuracy = scores.get("classifier_accuracy")
    if accuracy:
        parts = [
            f"{name} {accuracy[name]:.3f}" for name in ("original", "masked", *versions) if name in accuracy
        ]
        recovered = accuracy.get("model_recovered")
        lines.append("  classifier accuracy: " + ", ".join(parts))
        if recovered is not None:
            lines.append(f"  the model's fill recovers {recovered:.0%} of the accuracy the mask destroyed")
    return lines


def flat_scores(scores: dict) -> dict[str, float]:
    """``inpaint/<method>/<score>`` and ``inpaint/accuracy/<version>`` for metrics.json and the loggers."""
    flat = {}
    for name, values in scores.items():
        prefix = "inpaint/accuracy" if name == "classifier_accuracy" else f"inpaint/{name}"
        flat.update({f"{prefix}/{k}": v for k, v in values.items() if v is not None})
    return flat


main = hydra_task("inpaint")(inpaint)

if __name__ == "__main__":
    main()
