"""Export a synthetic dataset: ``python -m src.generate ckpt_path=... n=50000 out_dir=synthetic/mnist_cgan``.

Loads the model from its checkpoint (EMA weights when it has them), generates ``n`` samples
(class-balanced, proportional or chosen classes for conditional models; labelled by the domain
classifier for unconditional ones), writes ImageFolder PNGs, ``metadata.csv``, ``data.npz``,
``manifest.json`` and ``SHA256SUMS`` atomically, and with ``logger=wandb`` logs the directory as a
W&B dataset artifact. Verify it later with ``python -m src.verify_dataset <out_dir>``.
``fill=balance`` (``fill.target=N``: up to N per class) fills the real training split up to a
target per class instead and exports real + generated images (:mod:`src.export.fill`). Conditional
generation passes the per-class gate (``gate`` / ``fill.gate``: :mod:`src.export.gate`); its table
is in the manifest, the dataset card and the console, its warnings in ``metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from src.export.exporter import ExportOptions
from src.export.gate import gate_lines
from src.export.pipeline import export_trained_model
from src.export.writer import check_out_dir
from src.logger import finish_wandb_runs
from src.runtime.build import build_collection, build_metrics, load_trained_run
from src.runtime.config_check import task_options
from src.runtime.entry import hydra_task
from src.runtime.run import TaskResult


@dataclass
class GenerateOptions:
    """The top-level keys of ``conf/generate.yaml`` besides the export options (:class:`ExportOptions`)."""

    task_name: str
    ckpt_path: str
    data_dir: str | None


def generate(cfg: DictConfig) -> TaskResult:
    task_options(GenerateOptions, cfg)
    options = task_options(ExportOptions, cfg)
    check_out_dir(Path(options.out_dir), options.overwrite)
    run = load_trained_run(cfg, cfg.ckpt_path)
    loggers = build_collection(cfg.get("logger"))
    failed = True
    try:
        run.model.to(run.hardware.device())
        metrics = next(iter(build_metrics(run.run_cfg, run.datamodule, run.hardware)), None)
        out_dir, manifest = export_trained_model(
            run.model, run.datamodule, run.run_cfg, cfg.ckpt_path, options, loggers, metrics
        )
        failed = False
    finally:
        finish_wandb_runs(loggers, failed)
    scores = {f"export/{name}": value for name, value in manifest.get("scores", {}).items()}
    counts = {f"export/n_{source}": entry["n"] for source, entry in manifest.get("sources", {}).items()}
    if "acceptance_rate" in manifest.get("fill", {}):
        counts["export/acceptance_rate"] = manifest["fill"]["acceptance_rate"]
    gate = manifest.get("gate")
    if gate and not gate.get("skipped"):
        counts["export/gate_failed"] = len(gate["failed"])
        if gate["min_observed_agreement"] is not None:
            counts["export/min_agreement_observed"] = gate["min_observed_agreement"]
    unit = "rows" if manifest.get("kind") == "table" else "images"
    summary = [f"exported {manifest['n']} {unit} to {out_dir}"]
    for source, entry in manifest.get("sources", {}).items():
        summary.append(f"  {source}: {entry['n']} {unit}, per class {entry['per_class']}")
    if "acceptance_rate" in manifest.get("fill", {}):
        summary.append(f"  fill acceptance rate: {manifest['fill']['acceptance_rate']:.3f}")
    if gate:
        summary += gate_lines(gate)
    protocol = {"export": manifest.get("score_protocol", {}), "out_dir": str(out_dir)}
    if gate:
        # collect_warnings reads each protocol entry's `warnings`: metrics.json names the failed classes.
        protocol["gate"] = gate
    return TaskResult(
        metrics={"export/n": manifest["n"], **counts, **scores},
        protocol=protocol,
        data_source=run.datamodule.data_source,
        extra={"data": run.datamodule.describe()},
        summary=summary,
    )


main = hydra_task("generate")(generate)

if __name__ == "__main__":
    main()
