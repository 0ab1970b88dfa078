"""The table of scores and everything that reads a direction from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from src.metrics import registry
from src.metrics.callback import MODE_SCORES
from src.metrics.scoring import ScoreOptions, Scorer
from src.models.vae import EVAL_SCORES
from src.runtime.build import build_run_parts
from src.runtime.entry import CONFIG_DIR
from src.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_every_score_the_framework_logs_is_in_the_table() -> None:
    everything = ScoreOptions(kid=True, isc=True, prdc=True, authenticity=True, mifid=True)
    names = [f"val/{n}" for n in Scorer.names(everything)] + [f"val/{n}" for n in MODE_SCORES]
    names += [f"test/{n}" for n in EVAL_SCORES] + ["test/nll_iwae", "train/loss", "train/kl", "train/beta"]
    names += [
        "val/d_real",
        "val/d_fake",
        "val/d_margin",
        "val/d_acc",
        "loss/d",
        "loss/g",
        "loss/gp",
        "loss/r1",
    ]
    missing = [name for name in names if registry.lookup(name) is None]
    assert not missing


@pytest.mark.parametrize(
    ("name", "mode", "direction", "arrow"),
    [
        ("val/fid", "min", "minimize", "↓"),
        ("test/precision", "max", "maximize", "↑"),
        ("val/elbo", "max", "maximize", "↑"),
        ("test/nll_iwae", "min", "minimize", "↓"),
        ("val/rkl", "min", "minimize", "↓"),
        ("val/modes", "max", "maximize", "↑"),
        ("spread/val/fid", "min", "minimize", "↓"),
    ],
)
def test_directions_come_from_the_table(name: str, mode: str, direction: str, arrow: str) -> None:
    assert registry.mode(name) == mode
    assert registry.direction(name) == direction
    assert registry.arrow(name) == arrow
    assert registry.with_arrow(name) == f"{name} {arrow}"


def test_diagnostics_and_unknown_names_cannot_be_optimised() -> None:
    with pytest.raises(UserError, match="no better direction"):
        registry.mode("val/d_real")
    with pytest.raises(UserError, match="not in the table"):
        registry.direction("val/nonsense")
    assert registry.arrow("loss/d") == "" and registry.arrow("global_step") == ""
    with pytest.raises(UserError, match=r"model.monitor_mode=min contradicts model.monitor=val/precision"):
        registry.check_mode("val/precision", "min", "model.monitor", "model.monitor_mode")


def test_readme_lists_the_table() -> None:
    assert registry.markdown_table() in (ROOT / "README.md").read_text()


def _compose_with_hydra(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize(
    ("search", "metric", "direction", "penalty"),
    [
        ("gan_optuna", None, "minimize", 1e9),
        ("gan_optuna", "val/precision", "maximize", -1e9),
        ("vae_optuna", None, "maximize", -1e9),
        ("vae_optuna", "test/nll_iwae", "minimize", 1e9),
    ],
)
def test_optuna_direction_and_penalty_follow_the_optimized_metric(
    search: str, metric: str | None, direction: str, penalty: float
) -> None:
    overrides = [f"hparams_search={search}"] + ([f"optimized_metric={metric}"] if metric else [])
    cfg = _compose_with_hydra(overrides)
    assert cfg.hydra.sweeper.direction == direction
    assert cfg.objective_penalty == penalty


@pytest.mark.parametrize(
    ("overrides", "monitor", "mode"),
    [
        (["model=dcgan", "data=grid25"], "val/rkl", "min"),
        (["model=dcgan", "metrics=none"], "val/d_acc", "min"),
        (["model=dcgan"], "val/fid", "min"),
        (["model=vae", "metrics=none"], "val/elbo", "max"),
        (["model=dcgan", "model.monitor=val/coverage"], "val/coverage", "max"),
        (["model=dcgan", "model.monitor=null"], None, None),
    ],
)
def test_auto_monitor_follows_what_the_run_logs(make_cfg, overrides: list[str], monitor, mode) -> None:
    source = [] if "data=grid25" in overrides else ["data.source=files"]
    cfg = make_cfg("train", [*overrides, *source])
    _, _, model = build_run_parts(cfg, settle_monitors=True)
    assert (model.monitor, model.monitor_mode) == (monitor, mode)
    assert (cfg.model.monitor, cfg.model.monitor_mode) == (monitor, mode)
    checkpoint = OmegaConf.to_container(cfg.callbacks.model_checkpoint, resolve=True)
    assert checkpoint["monitor"] == monitor and checkpoint["mode"] == (mode or "min")
    assert model.run_config["model"]["monitor"] == monitor


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model=dcgan", "model.monitor=val/precision", "model.monitor_mode=min"],
            "model.monitor_mode=min contradicts",
        ),
        (
            ["model=vae", "callbacks.model_checkpoint.mode=min"],
            "callbacks.model_checkpoint.mode=min contradicts",
        ),
        (["model=dcgan", "data=grid25", "model.monitor=val/fid"], "model.monitor=val/fid is not logged"),
        (["model=dcgan", "model.monitor=val/d_fake"], "no better direction"),
    ],
)
def test_monitors_against_the_table_stop_before_training(
    make_cfg, overrides: list[str], message: str
) -> None:
    source = [] if "data=grid25" in overrides else ["data.source=files"]
    cfg = make_cfg("train", [*overrides, *source])
    with pytest.raises(UserError, match=message):
        build_run_parts(cfg, settle_monitors=True)


def test_early_stopping_watches_the_monitor_in_the_tables_direction(make_cfg) -> None:
    from src.train import train

    # No learning (lr 0, no batch norm): val/elbo never improves after the first validation.
    cfg = make_cfg(
        "train",
        [
            "model=vae",
            "model.width=8",
            "model.latent_dim=4",
            "model.norm=none",
            "model.optimizer.lr=0",
            "metrics=none",
            "data.source=files",
            "callbacks=early_stopping",
            "callbacks.early_stopping.patience=1",
            "trainer.max_epochs=6",
            "test=false",
        ],
    )
    result = train(cfg)
    assert cfg.callbacks.early_stopping.mode == "max"
    assert result.metrics["epoch"] == 2  # epochs 0 and 1 validated, no improvement at 1: stop


def test_early_stopping_without_a_monitor_stops_before_training(make_cfg) -> None:
    cfg = make_cfg(
        "train", ["model=vae", "model.monitor=null", "callbacks=early_stopping", "data.source=files"]
    )
    with pytest.raises(UserError, match=r"Change callbacks\.early_stopping\.monitor"):
        build_run_parts(cfg, settle_monitors=True)
