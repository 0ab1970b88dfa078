"""Membership-inference audit: ``python -m src.audit ckpt_path=...`` or ``export_dir=...``.

On a checkpoint: the model's white-box attack (VAE ELBO, GAN discriminator score) and the
closest-synthetic-image attack on ``n_synthetic`` of its samples. On an export directory: the
closest-synthetic-image attack on the exported images (black-box), against the data of the run
that made it, with ``<dir>.audit.json`` / ``.md`` written beside the dataset. Members are ``n``
training images, non-members as many test images (``src/metrics/membership.py``). Writes
``metrics.json`` (``audit/<attack>/auc``, ``.../tpr_at_fpr_1pct``, ``.../tpr_at_fpr_0.1pct``) with
the protocol, and logs to the loggers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from src.export.audit import write_audit_report
from src.export.reader import read_export
from src.logger import finish_wandb_runs
from src.metrics.membership import membership_audit, model_white_box
from src.runtime.build import build_collection, build_datamodule, build_hardware, load_trained_run
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
    else:
        root = Path(cfg.export_dir).expanduser()
        exported = read_export(root)
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
        build_hardware(run_cfg)
        datamodule = build_datamodule(run_cfg)
        datamodule.prepare_data()
        datamodule.setup()
        synthetic, white_box, source = exported.images, None, {"export_dir": str(root.resolve())}
    scores, protocol = membership_audit(datamodule, cfg.n, cfg.seed, white_box=white_box, synthetic=synthetic)
    protocol.update(source)
    if cfg.export_dir:
        write_audit_report(Path(cfg.export_dir).expanduser(), scores, protocol)
    loggers = build_collection(cfg.get("logger"))
    try:
        for logger in loggers:
            logger.log_hyperparams({"audit": protocol})
            logger.log_metrics(scores)
    finally:
        finish_wandb_runs(loggers, failed=False)
    return TaskResult(metrics=scores, protocol={"audit": protocol}, data_source=datamodule.data_source)


main = hydra_task("audit")(audit)

if __name__ == "__main__":
    main()
