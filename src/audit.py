"""Membership-inference audit: ``python -m src.audit ckpt_path=...`` or ``export_dir=...``.

On a checkpoint: the model's white-box attack (VAE ELBO, GAN discriminator score) and the
closest-synthetic-image attack on ``n_synthetic`` of its samples. On an export directory: the
closest-synthetic-image attack on the exported images (black-box), against the data of the run
that made it, with ``<dir>.audit.json`` / ``.md`` written beside the dataset. Members are ``n``
training images, non-members as many test images (``src/metrics/membership.py``). Writes
``metrics.json`` (``audit/<attack>/auc``, ``.../tpr_at_fpr_1pct``, ``.../tpr_at_fpr_0.1pct``; ``null``
where there are too few non-members to measure that rate) with the protocol and the audited model's
``privacy`` block (its checkpoint's or export manifest's; ``mechanism: none`` without one), and logs
to the loggers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from src.data.base import GenerativeDataModule
from src.export.audit import write_audit_report
from src.export.exporter import NO_PRIVACY, privacy_block
from src.export.reader import is_table_export, read_export, read_table_export
from src.hardware import Hardware
from src.logger import finish_wandb_runs
from src.metrics.membership import membership_audit, model_white_box
from src.runtime.build import (
    build_collection,
    build_datamodule,
    build_hardware,
    build_metrics,
    load_trained_run,
)
from src.runtime.config_check import check_config, task_options
from src.runtime.entry import hydra_task
from src.runtime.run import TaskResult
from src.utils.errors import UserError
from src.utils.images import to_uint8
from src.utils.types import PositiveInt


@dataclass
class AuditOptions:
    """The top-level keys of ``conf/audit.yaml``."""

    task_name: str
    ckpt_path: str | None
    export_dir: str | None
    data_dir: str | None
    n: PositiveInt
    n_synthetic: PositiveInt
    seed: int


def audit(cfg: DictConfig) -> TaskResult:
    task_options(AuditOptions, cfg)
    if bool(cfg.ckpt_path) == bool(cfg.export_dir):
        raise UserError(
            "give one of ckpt_path=<checkpoint> (white-box and black-box) or export_dir=<export> (black-box)."
        )
    if cfg.ckpt_path:
        run = load_trained_run(cfg, cfg.ckpt_path)
        model = run.model.to(run.hardware.device()).eval()
        generator = torch.Generator(device=model.device).manual_seed(cfg.seed)
        if model.data_kind == "table":
            rows = torch.cat(
                [
                    model.sample(min(500, cfg.n_synthetic - i), generator=generator).cpu()
                    for i in range(0, cfg.n_synthetic, 500)
                ]
            )
            frame = run.datamodule.schema.decode(rows)
            return _table_audit(
                cfg,
                run.run_cfg,
                run.datamodule,
                run.hardware,
                frame,
                privacy_block(model),
                {"checkpoint": str(cfg.ckpt_path)},
            )
        synthetic = torch.cat(
            [
                to_uint8(model.sample(min(500, cfg.n_synthetic - i), generator=generator)).cpu()
                for i in range(0, cfg.n_synthetic, 500)
            ]
        )
        datamodule, white_box, source = (
            run.datamodule,
            model_white_box(model),
            {"checkpoint": str(cfg.ckpt_path)},
        )
        privacy = privacy_block(model)
    else:
        root = Path(cfg.export_dir).expanduser()
        table = is_table_export(root)
        exported = read_table_export(root, "export_dir") if table else read_export(root, "export_dir")
        run_cfg = OmegaConf.create(exported.manifest.get("config") or {})
        if "data" not in run_cfg:
            raise UserError(
                f"export_dir={root}: its manifest has no run config, so the training data are unknown."
            )
        with open_dict(run_cfg):
            run_cfg.hardware = cfg.hardware
            if cfg.get("data_dir"):
                run_cfg.data.data_dir = cfg.data_dir
        check_config(run_cfg, ("hardware", "data"))
        hardware = build_hardware(run_cfg)
        datamodule = build_datamodule(run_cfg)
        datamodule.prepare_data()
        datamodule.setup()
        privacy = exported.manifest.get("privacy") or {"mechanism": "none", "statement": NO_PRIVACY}
        if table:
            return _table_audit(
                cfg,
                run_cfg,
                datamodule,
                hardware,
                exported.only("synthetic"),
                privacy,
                {"export_dir": str(root.resolve())},
            )
        synthetic, white_box, source = exported.images, None, {"export_dir": str(root.resolve())}
    scores, protocol = membership_audit(datamodule, cfg.n, cfg.seed, white_box=white_box, synthetic=synthetic)
    return _finish(cfg, datamodule, scores, protocol, privacy, source)


def _table_audit(
    cfg: DictConfig,
    run_cfg: DictConfig,
    datamodule: GenerativeDataModule,
    hardware: Hardware,
    frame: pd.DataFrame,
    privacy: dict,
    source: dict,
) -> TaskResult:
    """Tables: the black-box attack on the distance to the closest generated row (the run's table
    metrics, :meth:`src.metrics.TableMetrics.audit_frame`); table models have no white-box attack."""
    metrics = next(iter(build_metrics(run_cfg, datamodule, hardware, prepare=False)), None)
    if metrics is None or not hasattr(metrics, "audit_frame"):
        raise UserError("the audit of a table needs the run's metrics=table settings; this run has none.")
    scores, protocol = metrics.audit_frame(frame, datamodule, n=cfg.n, seed=cfg.seed)
    return _finish(cfg, datamodule, scores, protocol, privacy, source)


def _finish(
    cfg: DictConfig,
    datamodule: GenerativeDataModule,
    scores: dict,
    protocol: dict,
    privacy: dict,
    source: dict,
) -> TaskResult:
    protocol.update(source)
    if cfg.export_dir:
        write_audit_report(Path(cfg.export_dir).expanduser(), scores, protocol, privacy)
    loggers = build_collection(cfg.get("logger"))
    try:
        for logger in loggers:
            logger.log_hyperparams({"audit": protocol, "privacy": privacy})
            # An unmeasurable TPR level (NaN) stays out of the loggers; metrics.json records it as null.
            logger.log_metrics({name: value for name, value in scores.items() if math.isfinite(value)})
    finally:
        finish_wandb_runs(loggers, failed=False)
    return TaskResult(
        metrics=scores,
        protocol={"audit": protocol},
        data_source=datamodule.data_source,
        extra={"privacy": privacy},
        summary=summary_lines(scores, protocol, privacy),
    )


def summary_lines(scores: dict[str, float], protocol: dict, privacy: dict) -> list[str]:
    """The console table: each attack's ROC AUC (0.5 = no leakage) and TPRs at low FPR."""
    attacks = sorted({name.split("/")[1] for name in scores if name.startswith("audit/")})
    epsilon = privacy.get("epsilon")
    guarantee = f"epsilon {epsilon:.3g}" if isinstance(epsilon, int | float) else "no privacy guarantee"
    lines = [
        f"membership audit ({protocol.get('n_members')} members vs {protocol.get('n_nonmembers')} non-members; "
        f"model: {guarantee}; AUC 0.5 = members cannot be told apart):",
        f"  {'attack':<20}{'AUC':>7}{'TPR@1%':>9}{'TPR@0.1%':>10}",
    ]

    def cell(value: float | None, width: int) -> str:
        return f"{'n/a':>{width}}" if value is None or not math.isfinite(value) else f"{value:>{width}.3f}"

    for attack in attacks:
        auc, tpr1, tpr01 = (
            scores.get(f"audit/{attack}/{key}") for key in ("auc", "tpr_at_fpr_1pct", "tpr_at_fpr_0.1pct")
        )
        lines.append(f"  {attack:<20}{cell(auc, 7)}{cell(tpr1, 9)}{cell(tpr01, 10)}")
    return lines


main = hydra_task("audit")(audit)

if __name__ == "__main__":
    main()
