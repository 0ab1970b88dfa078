"""Every option of every config group composes, resolves and matches the signature it targets."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from src.runtime.config_check import check_config
from src.runtime.entry import CONFIG_DIR

CONF = Path(CONFIG_DIR)
GROUPS = [
    "model",
    "data",
    "trainer",
    "hardware",
    "logger",
    "callbacks",
    "metrics",
    "privacy",
    "debug",
    "experiment",
    "hparams_search",
]
CHECKED = ("model", "data", "trainer", "hardware", "logger", "callbacks", "metrics", "privacy")
# Options that need a value from the user (or, for image folders, from the data) to be complete.
REQUIRED = {
    ("data", "image_folder"): ["data.root=/tmp", "data.num_classes=0", "data.channels=3"],
    # Tables: the classes are read from the table when the data module is built (not composed here).
    ("data", "table"): ["data.path=/tmp/table.csv", "data.num_classes=0"],
    ("data", "breast_cancer"): ["data.num_classes=2"],
    ("data", "doctor_aus"): ["data.num_classes=4"],
    ("data", "adult"): ["data.num_classes=2"],
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


CASES = [(group, option) for group in GROUPS for option in options(group)]


def test_every_group_has_options() -> None:
    for group in GROUPS:
        if group != "hparams_search":
            assert options(group), f"conf/{group} is empty"


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_matches_its_targets(make_cfg, group: str, option: str) -> None:
    overrides = [f"{group}={option}", *REQUIRED.get((group, option), [])]
    cfg = make_cfg("train", overrides, fast=False)
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["task_name"]
    check_config(cfg, CHECKED)


@pytest.mark.parametrize("config_name", ["train", "eval", "audit"])
def test_entry_configs_compose(make_cfg, config_name: str) -> None:
    overrides = ["ckpt_path=/x.ckpt"] if config_name == "eval" else []
    cfg = make_cfg(config_name, overrides, fast=False)
    assert cfg.task_name == config_name
