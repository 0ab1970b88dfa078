"""Instantiation of the composed config: data, model, hardware, callbacks, loggers, trainer.

Every entry point builds its objects here, in the same order, so a mistake in any group stops
the run with one ``Error:`` line before data are loaded or a process is started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from src.callbacks import DivergenceGuard, ScoreHistory
from src.data.base import GenerativeDataModule
from src.hardware import Hardware
from src.metrics import SampleQuality, Scorer, registry
from src.models.base import CONFIG_KEY, GenerativeModule
from src.models.checkpoint import read_checkpoint
from src.privacy import DifferentialPrivacy
from src.runtime.config_check import check_config
from src.utils.errors import UserError
from src.utils.logging import get_logger
from src.utils.paths import CONFIG_DIR

log = get_logger(__name__)

DATA_SPEC_KEYS = ("image_size", "channels", "num_classes", "point_dim")


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets a constructor's :class:`UserError` through unwrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, UserError):
                raise cause from None
            cause = cause.__cause__ or cause.__context__
        raise


def build_collection(node: DictConfig | None) -> list[Any]:
    """Instantiates a mapping of named items (``callbacks``, ``logger``); null entries are skipped."""
    if not node:
        return []
    return [build(item) for item in node.values() if isinstance(item, DictConfig) and "_target_" in item]


def build_hardware(cfg: DictConfig) -> Hardware:
    hardware: Hardware = build(cfg.hardware)
    hardware.check()
    hardware.apply_global_settings()
    return hardware


def build_datamodule(cfg: DictConfig) -> GenerativeDataModule:
    """Builds the data module and learns what the config leaves to the data (no download yet).

    What the data module infers (an image folder's classes, its ``channels: auto``) is written
    back into ``cfg.data``, so the model config's interpolations (``${data.num_classes}``,
    ``${data.channels}``) see the resolved value.
    """
    datamodule: GenerativeDataModule = build(cfg.data)
    datamodule.resolve_spec()
    with open_dict(cfg):
        for key in DATA_SPEC_KEYS:
            if key not in cfg.data or cfg.data[key] not in (None, "auto"):
                continue
            if getattr(datamodule, key, None) is not None:
                cfg.data[key] = getattr(datamodule, key)
    return datamodule


def build_run_parts(
    cfg: DictConfig, settle_monitors: bool = False
) -> tuple[Hardware, GenerativeDataModule, GenerativeModule]:
    """Checks every group, then builds hardware, data and model; the data are located last.

    Order matters: model configs interpolate the data spec, and the data source (files,
    download, bundled) is resolved only once every config mistake has had its chance to stop
    the run. ``settle_monitors`` (training) resolves ``model.monitor=auto`` and the monitors'
    modes (:func:`resolve_monitors`).
    """
    check_config(cfg, ("hardware", "data", "trainer"))
    hardware = build_hardware(cfg)
    datamodule = build_datamodule(cfg)
    check_config(cfg, ("model", "callbacks", "logger", "metrics"))
    model = build_model(cfg, hardware)
    if settle_monitors:
        resolve_monitors(cfg, model, build_metrics(cfg, datamodule, hardware, prepare=False), datamodule)
    datamodule.prepare_data()
    return hardware, datamodule, model


def build_privacy(cfg: DictConfig, model: GenerativeModule, hardware: Hardware) -> DifferentialPrivacy | None:
    """The ``privacy`` engine (``privacy=dp``), checked against model, trainer and hardware before
    any data are loaded; ``None`` for ``privacy=none``. Its :meth:`~DifferentialPrivacy.plan` runs
    once the training split is known."""
    node = cfg.get("privacy")
    if not node or "_target_" not in node:
        return None
    privacy: DifferentialPrivacy = build(node)
    privacy.check(model, cfg.trainer, hardware)
    return privacy


def build_metrics(
    cfg: DictConfig, datamodule: GenerativeDataModule, hardware: Hardware, prepare: bool = True
) -> list[Callback]:
    """The ``metrics`` callback; prepared (see :func:`prepare_metrics`) unless ``prepare=False``."""
    callbacks = build_collection({"metrics": cfg.metrics} if cfg.get("metrics") else None)
    if prepare:
        prepare_metrics(callbacks, datamodule, hardware)
    return callbacks


def prepare_metrics(callbacks: list[Callback], datamodule: GenerativeDataModule, hardware: Hardware) -> None:
    """Checks the metrics' options against the data and loads their feature extractor (training it
    on first use) in this process, before any DDP worker starts."""
    for callback in callbacks:
        if hasattr(callback, "prepare"):
            callback.prepare(datamodule, hardware.device())


def logged_scores(
    model: GenerativeModule, callbacks: list[Callback], datamodule: GenerativeDataModule
) -> list[str]:
    """The ``val/...`` scores this run logs: the model's own and the metrics callback's."""
    names = set(model.validation_scores())
    for callback in callbacks:
        if hasattr(callback, "score_names"):
            names.update(callback.score_names(datamodule))
    return sorted(f"val/{name}" for name in names)


def resolve_monitors(
    cfg: DictConfig, model: GenerativeModule, metrics: list[Callback], datamodule: GenerativeDataModule
) -> None:
    """Settles what best.ckpt (and early stopping) monitor, and which way, before callbacks are built.

    ``model.monitor=auto`` becomes the first of the model's ``monitor_candidates`` that this run logs
    (none: best.ckpt = last). Modes come from the table of scores (``src.metrics.registry``): a null
    mode is filled in, a contradicting one is a :class:`UserError`. Every callback config with a
    ``monitor`` key (``model_checkpoint``, ``early_stopping``) must monitor a logged score.
    The settled values are written into ``cfg`` (callbacks interpolate ``${model.monitor}``) and
    into the model and its stored run config (checkpoints carry them).
    """
    logged = logged_scores(model, metrics, datamodule)
    monitor = cfg.model.get("monitor")
    if monitor == "auto":
        monitor = next((name for name in model.monitor_candidates if name in logged), None)
        log.info(f"model.monitor=auto: best.ckpt selected by {monitor or 'the latest epoch'}")
    mode = cfg.model.get("monitor_mode")
    if monitor is not None:
        _check_logged(monitor, logged, "model.monitor")
        mode = registry.check_mode(monitor, mode, "model.monitor", "model.monitor_mode")
    with open_dict(cfg):
        cfg.model.monitor, cfg.model.monitor_mode = monitor, mode
        for key, node in (cfg.get("callbacks") or {}).items():
            if not isinstance(node, DictConfig) or "monitor" not in node:
                continue
            raw = OmegaConf.to_container(node, resolve=False).get("monitor")
            purpose = "model.monitor" if raw == "${model.monitor}" else f"callbacks.{key}.monitor"
            name = node.get("monitor")
            if name is None:
                node.mode = node.get("mode") or "min"  # unused without a monitor; Lightning wants one
                continue
            _check_logged(name, logged, purpose)
            node.mode = registry.check_mode(name, node.get("mode"), purpose, f"callbacks.{key}.mode")
    model.monitor, model.monitor_mode = monitor, mode
    model.run_config = OmegaConf.to_container(cfg, resolve=True)


def check_sweep_direction(cfg: DictConfig) -> None:
    """A search's direction must agree with the table for ``optimized_metric`` (a job of a sweep
    whose direction was set by hand against the table stops before any work)."""
    metric = cfg.get("optimized_metric")
    if not metric:
        return
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    sweeper = HydraConfig.get().get("sweeper") or {}
    given = sweeper.get("direction") if isinstance(sweeper, DictConfig) else None
    if not isinstance(given, str):
        return  # multi-objective lists and sweepers without a direction
    derived = registry.direction(metric, "optimized_metric")
    if given != derived:
        raise UserError(
            f"hydra.sweeper.direction={given} contradicts optimized_metric={metric} (the table of scores says "
            f"{derived}): remove the override (the hparams_search configs derive it) or set hydra.sweeper.direction={derived}."
        )


def _check_logged(name: str, logged: list[str], purpose: str) -> None:
    if name not in logged:
        raise UserError(
            f"{purpose}={name} is not logged in this run (logged: {', '.join(logged) or 'nothing'}): "
            f"set {purpose} to one of them, {purpose}=null, or enable the metrics that log it."
        )


def build_model(cfg: DictConfig, hardware: Hardware) -> GenerativeModule:
    model: GenerativeModule = build(cfg.model)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    return hardware.prepare_model(model)


def build_trainer(
    cfg: DictConfig,
    hardware: Hardware,
    callbacks: list[Callback],
    loggers: list[Logger],
    model: pl.LightningModule | None = None,
) -> pl.Trainer:
    kwargs: dict[str, Any] = {}
    if model is not None and not model.automatic_optimization:
        kwargs = _hand_loop_settings_to_model(cfg.trainer, model)
    if cfg.trainer.get("enable_progress_bar") is False:
        # The configured bar (callbacks.progress_bar) makes way: Lightning refuses a progress-bar
        # callback together with enable_progress_bar=false.
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return build(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, **hardware.trainer_kwargs(), **kwargs
    )


def _hand_loop_settings_to_model(trainer_cfg: DictConfig, model: pl.LightningModule) -> dict[str, Any]:
    """Trainer overrides for models that step their own optimizers (GANs).

    Lightning's Trainer refuses ``gradient_clip_val`` with manual optimization, yet clipping is a
    training-loop setting (``trainer.gradient_clip_val``) whatever the model: the value goes to
    the model, which clips before each of its updates, and the Trainer gets none.
    """
    if trainer_cfg.get("accumulate_grad_batches", 1) != 1:
        raise UserError(
            f"model={getattr(model, 'model_name', 'this model')} makes its own optimizer steps and cannot "
            "accumulate gradients: remove trainer.accumulate_grad_batches (raise data.batch_size instead)."
        )
    model.gradient_clip_val = trainer_cfg.get("gradient_clip_val")
    model.gradient_clip_algorithm = trainer_cfg.get("gradient_clip_algorithm") or "norm"
    return {"gradient_clip_val": None}


def log_hyperparameters(trainer: pl.Trainer, cfg: DictConfig, model: pl.LightningModule) -> None:
    if not trainer.loggers:
        return
    params = OmegaConf.to_container(cfg, resolve=True)
    params["model/params/total"] = sum(p.numel() for p in model.parameters())
    params["model/params/trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for logger in trainer.loggers:
        logger.log_hyperparams(params)


def collect_protocol(trainer: pl.Trainer) -> dict[str, Any]:
    """The evaluation protocols that callbacks recorded (extractor, hash, n_real, n_fake, split, seed)."""
    protocol: dict[str, Any] = {}
    for callback in trainer.callbacks:
        protocol.update(getattr(callback, "protocol", None) or {})
    return protocol


def collect_stability(trainer: pl.Trainer) -> tuple[dict[str, float], dict[str, Any]]:
    """``spread/<score>`` for every score with a direction in the table (its standard deviation
    over the run's last k evaluations, from :class:`ScoreHistory`) and ``divergence_events`` (from the
    :class:`DivergenceGuard`), with their protocol."""
    scores: dict[str, float] = {}
    protocol: dict[str, Any] = {}
    for callback in trainer.callbacks:
        if isinstance(callback, ScoreHistory):
            counts = callback.evaluations()
            for name, spread in callback.spreads().items():
                row = registry.lookup(name)
                if row is not None and row.higher_is_better is not None:
                    scores[f"spread/{name}"] = spread
            protocol.update(
                spread="sample standard deviation over the run's last k evaluations",
                last_k=callback.last_k,
                evaluations=max(counts.values(), default=0),
            )
        if isinstance(callback, DivergenceGuard):
            scores["divergence_events"] = callback.events
    return scores, protocol


@dataclass
class TrainedRun:
    """A model rebuilt from a checkpoint, with the data it was trained on."""

    run_cfg: DictConfig
    hardware: Hardware
    datamodule: GenerativeDataModule
    model: GenerativeModule

    def scorer(self) -> Scorer:
        """The run's own scorer: the extractor and score options of its ``metrics`` config (the
        extractor from the cache, trained on first use). With the same sample count these give the
        numbers ``src.eval`` gives for the checkpoint."""
        for callback in build_metrics(self.run_cfg, self.datamodule, self.hardware):
            if isinstance(callback, SampleQuality) and callback.extractor is not None:
                return Scorer(callback.extractor, callback.options, callback.cache_dir, callback.batch_size)
        raise UserError("this run has no image metrics (metrics=none or point data): nothing to score with.")


# Keys a command takes from its own config when it reuses a checkpoint's run config.
COMMAND_KEYS = ("hardware", "logger", "paths", "task_name")


def load_trained_run(cfg: DictConfig, ckpt_path: str | Path) -> TrainedRun:
    """Rebuilds model and data from the run config stored in the checkpoint.

    The command's own ``hardware``, ``logger`` and ``paths`` replace the stored ones; where the
    command sets them, so do ``metrics``, ``data_dir`` (where the data live on this machine) and
    ``seed``. The weights (EMA included) come from the checkpoint; the model is in eval mode, as
    ``src.eval`` tests it (in train mode, batch-norm layers sample with the statistics of each
    batch: other images, and other scores, than the command gives).
    """
    checkpoint = read_checkpoint(ckpt_path)
    run_cfg = OmegaConf.create(checkpoint[CONFIG_KEY])
    with open_dict(run_cfg):
        for key in COMMAND_KEYS:
            run_cfg[key] = cfg.get(key)
        if cfg.get("metrics") is not None:
            run_cfg["metrics"] = cfg.metrics
        if cfg.get("data_dir"):
            run_cfg.data.data_dir = cfg.data_dir
        if cfg.get("seed") is not None:
            run_cfg.seed = cfg.seed
    hardware, datamodule, model = build_run_parts(run_cfg)
    # The hook before the weights, as in GenerativeModule.from_checkpoint (table models rebuild their networks).
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return TrainedRun(run_cfg, hardware, datamodule, model.eval())


def load_run(ckpt_path: str | Path, data_dir: str | Path | None = None, hardware: str = "auto") -> TrainedRun:
    """A trained model and the data it was trained on, from Python, in one call.

    ``hardware`` names a ``conf/hardware`` option; ``data_dir`` points at the data on this
    machine when they are not where the training run found them. Paths (cache, logs) are the
    training run's own, so scores reuse its cached feature extractor. The model alone, without
    data: ``GenerativeModule.from_checkpoint(ckpt_path)``.
    """
    from hydra import compose, initialize_config_dir

    stored = read_checkpoint(ckpt_path)[CONFIG_KEY]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        composed = compose("eval", overrides=[f"hardware={hardware}", f"ckpt_path={ckpt_path}"])
    cfg = OmegaConf.create(
        {
            "hardware": OmegaConf.to_container(composed.hardware, resolve=True),
            "logger": None,
            "paths": stored["paths"],
            "task_name": stored.get("task_name", "train"),
            "data_dir": str(data_dir) if data_dir is not None else None,
        }
    )
    return load_trained_run(cfg, ckpt_path)
