"""Bad input ends with one `Error:` line, a non-zero exit code and no traceback, before any work."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch

from src.eval import main as eval_main
from src.train import main as train_main
from tests.conftest import run_cli


def run_main(main, args: list[str], tmp_path: Path, capsys, data_root: Path) -> tuple[int, str]:
    """Calls an entry point in-process as `python -m ...` would; returns (exit code, stderr)."""
    argv = [
        "prog",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"paths.data_dir={data_root}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "hardware=cpu",
        *args,
    ]
    old = sys.argv
    sys.argv = argv
    # Hydra points the root logger at this test's captured stderr; later tests must not write to it.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
        root.handlers[:] = handlers
        root.setLevel(level)
    return code, capsys.readouterr().err


def assert_one_error_line(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


BAD_TRAIN_INPUT = {
    "unknown group option": (["model=foo"], ["model/foo", "vae"]),
    "unknown key": (
        ["model.latnt_dim=3"],
        ["model.latnt_dim is not an option", "did you mean model.latent_dim"],
    ),
    "optimizer value torch rejects": (
        ["model=dcgan", "model.optimizer_g.lr=-1"],
        ["model.optimizer_g", "learning rate"],
    ),
    "scheduler value torch rejects": (
        ["experiment=toy2d", "model.scheduler_g.end_factor=2"],
        ["model.scheduler_g", "LinearLR"],
    ),
    "top-level key of the wrong type": (["objective_penalty=high"], ["objective_penalty='high'"]),
    "tags that are not a list": (["tags={a: 1}"], ["tags="]),
    "unknown added key": (["+model.foo=1"], ["model.foo is not an option", "latent_dim"]),
    "wrong type": (["model.latent_dim=abc"], ["model.latent_dim='abc'", "integer"]),
    "wrong type of a trainer option": (["trainer.max_epochs=ten"], ["trainer.max_epochs"]),
    "non-positive size": (["data.batch_size=0"], ["data.batch_size=0", "greater than 0"]),
    "non-positive latent": (["model.latent_dim=-4"], ["model.latent_dim=-4"]),
    "choice outside a list": (["model.likelihood=poisson"], ["'bernoulli' or 'gaussian'"]),
    "image size the architecture cannot produce": (["data.image_size=30"], ["30x30", "data.image_size"]),
    "conditional model on unlabelled data": (["model=cvae", "data=ring8"], ["conditional", "labelled"]),
    "VAE on point data": (["model=vae", "data=ring8"], ["needs image data"]),
    "missing checkpoint": (["ckpt_path=/does/not/exist.ckpt"], ["does not exist"]),
    "missing mandatory value": (["data=image_folder"], ["data.root has no value"]),
    "missing image folder": (["data=image_folder", "data.root=/does/not/exist"], ["not a directory"]),
    "dataset files missing": (
        ["data=cifar10", "data.source=files", "paths.data_dir=/nonexistent"],
        ["cifar-10-batches-py", "data_batch_1"],
    ),
    "GPU precision on a CPU": (["hardware.precision=16-mixed"], ["16-mixed", "bf16-mixed"]),
    "GPU hardware without a GPU": (["hardware=gpu"], ["CUDA GPU"]),
    "GPU hardware in a debug preset": (["debug=fdr", "hardware=gpu"], ["CUDA GPU"]),
    "malformed override": (["model.latent_dim=[1,"], []),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN_INPUT))
def test_bad_train_input(case: str, tmp_path: Path, capsys, data_root: Path) -> None:
    if case == "GPU hardware without a GPU" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    args, fragments = BAD_TRAIN_INPUT[case]
    code, err = run_main(train_main, args, tmp_path, capsys, data_root)
    assert code == 2
    assert_one_error_line(code, err, *fragments)
    # Nothing ran: no checkpoint was written.
    assert not list((tmp_path / "logs").rglob("*.ckpt"))


def test_corrupt_checkpoint(tmp_path: Path, capsys, data_root: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    for main, key in ((train_main, "ckpt_path"), (eval_main, "ckpt_path")):
        code, err = run_main(main, [f"{key}={bad}"], tmp_path, capsys, data_root)
        assert_one_error_line(code, err, "not a readable checkpoint")


def test_checkpoint_from_elsewhere(tmp_path: Path, capsys, data_root: Path) -> None:
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    code, err = run_main(eval_main, [f"ckpt_path={foreign}"], tmp_path, capsys, data_root)
    assert_one_error_line(code, err, "not written by `src.train`")


def test_eval_needs_a_checkpoint(tmp_path: Path, capsys, data_root: Path) -> None:
    code, err = run_main(eval_main, [], tmp_path, capsys, data_root)
    assert_one_error_line(code, err, "ckpt_path")


@pytest.mark.slow  # a `python -m` start-up (tests/README.md: the slow rule)
def test_real_command_line_reports_one_error_line_without_traceback(tmp_path: Path) -> None:
    code, _, err = run_cli("src.train", "model.latent_dim=0", f"paths.log_dir={tmp_path}")
    assert code == 2
    assert_one_error_line(code, err, "model.latent_dim=0")
    code, _, err = run_cli("src.train", "model=nope", f"paths.log_dir={tmp_path}")
    assert_one_error_line(code, err, "model/nope")


def test_full_error_env_shows_the_traceback(tmp_path: Path, monkeypatch, capsys, data_root: Path) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(Exception, match="model/foo"):
        run_main(train_main, ["model=foo"], tmp_path, capsys, data_root)


def test_checkpoint_monitor_that_nothing_logs(tmp_path: Path, capsys, data_root: Path) -> None:
    # The default (model.monitor=auto) follows what the run logs; a monitor named by hand must be logged.
    code, err = run_main(
        train_main, ["model=dcgan", "metrics=none", "model.monitor=val/fid"], tmp_path, capsys, data_root
    )
    assert_one_error_line(code, err, "model.monitor=val/fid is not logged", "val/d_acc")
