"""Export a synthetic dataset: ``python -m src.generate ckpt_path=... n=50000 out_dir=synthetic/mnist_cgan``.

Loads the model from its checkpoint (EMA weights when it has them), generates ``n`` samples
(class-balanced, proportional or chosen classes for conditional models; labelled by the domain
classifier for unconditional ones), writes ImageFolder PNGs, ``metadata.csv``, ``data.npz``,
``manifest.json`` and ``SHA256SUMS`` atomically, and with ``logger=wandb`` logs the directory as a
W&B dataset artifact. Verify it later with ``python -m src.verify_dataset <out_dir>``.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.export.artifacts import log_dataset_artifact
from src.export.exporter import ExportOptions, export_dataset, file_sha256
from src.export.writer import check_out_dir
from src.logger import finish_wandb_runs
from src.metrics import Scorer, score_samples
from src.utils.build import TrainedRun, build_collection, build_metrics, load_trained_run
from src.utils.config_check import check_callable_args
from src.utils.entry import hydra_task
from src.utils.run import TaskResult


def export_options(node: DictConfig) -> ExportOptions:
    """Checked :class:`ExportOptions` from the keys of ``node`` (generate's top level, or train's ``export``)."""
    values = {
        f.name: OmegaConf.to_container(node, resolve=True).get(f.name)
        for f in fields(ExportOptions)
        if f.name in node
    }
    check_callable_args(ExportOptions, values, path="")
    return ExportOptions(**values)


def export_from_run(
    run: TrainedRun, ckpt_path: str | Path, options: ExportOptions, loggers: list, metrics: Any = None
) -> tuple[Path, dict[str, Any]]:
    """The export shared by ``src.generate`` and ``src.train export.enabled=true``.

    ``metrics`` is the run's prepared metrics callback (built from the run config when omitted):
    its feature extractor scores the export against the real test split, and its domain
    classifier labels the samples of unconditional models (pseudo-labels, marked as such).
    """
    datamodule, model = run.datamodule, run.model
    model.to(run.hardware.device())
    datamodule.setup()
    if metrics is None:
        metrics = next(iter(build_metrics(run.run_cfg, datamodule, run.hardware)), None)
    extractor = getattr(metrics, "extractor", None)
    provenance: dict[str, Any] = {
        "checkpoint": {"path": str(Path(ckpt_path).resolve()), "sha256": file_sha256(ckpt_path)},
        "data": datamodule.describe(),
        "config": OmegaConf.to_container(run.run_cfg, resolve=True),
    }
    pseudo_labeler = None
    if extractor is not None and not model.num_classes and getattr(extractor, "has_class_logits", False):
        pseudo_labeler = lambda images: extractor.classify(images).argmax(1)  # noqa: E731
        provenance["pseudo_labeler"] = extractor.describe()
    scorer = None
    if extractor is not None:
        shared = Scorer(extractor, metrics.options, metrics.cache_dir, metrics.batch_size)
        scorer = lambda images: score_samples(images, datamodule, "test", scorer=shared)  # noqa: E731
    out_dir, manifest = export_dataset(
        model,
        class_names=datamodule.class_names,
        train_labels=datamodule.split("train")[1] if datamodule.num_classes else None,
        options=options,
        provenance=provenance,
        pseudo_labeler=pseudo_labeler,
        scorer=scorer,
    )
    log_dataset_artifact(loggers, out_dir, manifest, ckpt_path)
    return out_dir, manifest


def generate(cfg: DictConfig) -> TaskResult:
    options = export_options(cfg)
    check_out_dir(Path(options.out_dir), options.overwrite)
    run = load_trained_run(cfg, cfg.ckpt_path)
    loggers = build_collection(cfg.get("logger"))
    failed = True
    try:
        out_dir, manifest = export_from_run(run, cfg.ckpt_path, options, loggers)
        failed = False
    finally:
        finish_wandb_runs(loggers, failed)
    scores = {f"export/{name}": value for name, value in manifest.get("scores", {}).items()}
    return TaskResult(
        metrics={"export/n": options.n, **scores},
        protocol={"export": manifest.get("score_protocol", {}), "out_dir": str(out_dir)},
        data_source=run.datamodule.data_source,
    )


main = hydra_task("generate")(generate)

if __name__ == "__main__":
    main()
