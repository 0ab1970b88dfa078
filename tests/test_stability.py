"""Stability: spread of scores within a run, divergence events, and `src.compare` across seeds."""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

import pytest
import yaml

from src.metrics.compare import compare_runs, configuration_of, find_runs, markdown
from src.runtime.run import run_task
from src.train import train
from src.utils.errors import UserError
from tests.conftest import FAST_VAE, run_cli
from tests.test_sweeps import sweep


def test_metrics_json_holds_the_spread_of_the_last_k_evaluations(make_cfg) -> None:
    cfg = make_cfg(
        "train",
        [
            *FAST_VAE,
            "data.source=files",
            "metrics=none",
            "trainer.max_epochs=4",
            "callbacks.score_history.last_k=3",
        ],
    )
    run_task(train, cfg)
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "csv" / "metrics.csv") as handle:
        elbos = [float(row["val/elbo"]) for row in csv.DictReader(handle) if row.get("val/elbo")]
    assert len(elbos) == 4
    assert metrics["spread/val/elbo"] == pytest.approx(statistics.stdev(elbos[-3:]), rel=1e-6)
    assert "spread/val/kl" not in metrics  # a diagnostic without a direction: no spread recorded
    assert metrics["divergence_events"] == 0
    assert metrics["protocol"]["stability"]["last_k"] == 3


def test_the_spread_is_over_the_runs_last_evaluations_not_those_before_the_best(tmp_path: Path) -> None:
    """Testing best.ckpt (`trainer.test(ckpt_path=...)`) restores callback states: the history must
    stay the run's, not rewind to the evaluations before the best checkpoint."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.demos.boring_classes import BoringModel

    from src.callbacks import ScoreHistory
    from src.runtime.build import collect_stability

    fids = [1.0, 5.0, 2.0, 8.0, 3.0]  # best at the first evaluation

    class Scored(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("val/fid", fids[self.current_epoch])

    history = ScoreHistory(last_k=3)
    trainer = pl.Trainer(
        max_epochs=len(fids),
        limit_train_batches=1,
        limit_val_batches=1,
        limit_test_batches=1,
        num_sanity_val_steps=0,
        callbacks=[ModelCheckpoint(tmp_path, filename="best", monitor="val/fid", mode="min"), history],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    model = Scored()
    trainer.fit(model)
    trainer.test(model, ckpt_path=trainer.checkpoint_callback.best_model_path, verbose=False)
    scores, protocol = collect_stability(trainer)
    assert scores["spread/val/fid"] == pytest.approx(statistics.stdev(fids[-3:]))
    assert protocol["evaluations"] == 3


def test_a_diverged_run_records_its_divergence_event(make_cfg, monkeypatch) -> None:
    from src.models.vae import VaeModule

    original = VaeModule.training_step

    def poisoned(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        return loss * float("nan") if self.current_epoch == 1 else loss

    monkeypatch.setattr(VaeModule, "training_step", poisoned)
    cfg = make_cfg("train", [*FAST_VAE, "data.source=files", "metrics=none", "trainer.max_epochs=3"])
    with pytest.raises(SystemExit):
        run_task(train, cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["divergence_events"] == 1


# ------------------------------------------------------------------------------ src.compare
def make_run(
    root: Path,
    name: str,
    overrides: list[str],
    seed: int,
    scores: dict,
    curve: list[tuple[int, float]],
    status: str = "ok",
) -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides, f"seed={seed}"]))
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "logger": {"csv": {}}}))
    (run / "metrics.json").write_text(json.dumps({**scores, "status": status, "protocol": {}}))
    (run / "csv").mkdir()
    with open(run / "csv" / "metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "step", "loss/d", "val/fid", "val/d_real"])
        for step, value in curve:
            writer.writerow([0, step, 0.5, "", ""])
            writer.writerow([0, step, "", value, 0.1])
    return run


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    root = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    for i, (model, seed, fid) in enumerate(
        [
            ("dcgan", 1, 10.0),
            ("dcgan", 2, 14.0),
            ("dcgan", 3, 12.0),
            ("wgan_gp", 1, 30.0),
            ("wgan_gp", 2, 34.0),
        ]
    ):
        make_run(
            root,
            str(i),
            [f"model={model}", "paths.log_dir=/elsewhere"],
            seed,
            {"test/fid": fid, "test/precision": fid / 100, "global_step": 100},
            [(10, fid + 5), (20, fid + 1), (30 + (i == 0), fid)],
        )
    make_run(root, "5", ["model=wgan_gp"], 3, {"test/fid": 1e9}, [(10, 1.0)], status="failed")
    return root


def test_compare_gives_mean_and_spread_over_seeds_per_configuration(sweep_dir: Path) -> None:
    comparison = compare_runs(find_runs([sweep_dir]))
    by_name = {c["configuration"]: c for c in comparison["configurations"]}
    assert set(by_name) == {"model=dcgan", "model=wgan_gp"}
    dcgan, wgan = by_name["model=dcgan"], by_name["model=wgan_gp"]
    assert dcgan["runs"] == 3 and dcgan["seeds"] == [1, 2, 3]
    assert dcgan["scores"]["test/fid"] == {"mean": 12.0, "std": pytest.approx(2.0), "n": 3}
    assert wgan["runs"] == 2 and len(wgan["failed"]) == 1  # the failed seed is counted, not averaged
    assert wgan["scores"]["test/fid"]["mean"] == 32.0
    # Curves at the steps every seed logged (run 0 logged step 31 instead of 30); diagnostics left out.
    curve = dcgan["curves"]["val/fid"]
    assert curve["step"] == [10, 20] and curve["mean"] == [17.0, 13.0]
    assert curve["std"][0] == pytest.approx(2.0)
    assert "val/d_real" not in dcgan["curves"]
    table = markdown(comparison)
    assert "| test/fid ↓ | 12 ± 2 | 32 ± 2.8 |" in table and "test/precision ↑" in table
    assert "Failed runs, left out" in table


def _compare_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``python -m src.compare <args>`` in this process (its start-up is the README test's to pay)."""
    from src.compare import main

    monkeypatch.setattr(sys, "argv", ["python -m src.compare", *args])
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compare_command_writes_markdown_json_and_plot(sweep_dir: Path, monkeypatch, capsys) -> None:
    code, out, err = _compare_cli(monkeypatch, capsys, str(sweep_dir), "--scores", "test/fid,test/precision")
    assert code == 0, err[-2000:]
    for name in ("compare.md", "compare.json", "compare.png"):
        assert (sweep_dir / name).stat().st_size > 0
    assert "test/fid ↓" in out and str(sweep_dir) in out
    assert json.loads((sweep_dir / "compare.json").read_text())["runs"] == 6


def test_compare_plot_draws_runs_with_one_evaluation_as_points(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from src.metrics.compare import comparison_figure, plot

    for i, (model, seed, fid) in enumerate([("dcgan", 1, 10.0), ("dcgan", 2, 14.0), ("wgan_gp", 1, 30.0)]):
        make_run(tmp_path / "runs", str(i), [f"model={model}"], seed, {"test/fid": fid}, [(50, fid)])
    comparison = compare_runs(find_runs([tmp_path / "runs"]))
    fig = comparison_figure(comparison)
    try:
        # One data line per configuration (error bars and caps are separate artists).
        lines = [container.lines[0] for container in fig.axes[0].containers]
        assert [(list(line.get_xdata()), list(line.get_ydata())) for line in lines] == [
            ([50], [12.0]),
            ([50], [30.0]),
        ]
        assert all(line.get_marker() == "o" for line in lines)  # visible without a second point
    finally:
        plt.close(fig)
    assert plot(comparison, tmp_path / "compare.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required"),
        (["{tmp}/missing"], "is not a directory"),
        (["{tmp}/empty"], "holds no runs"),
    ],
)
def test_compare_mistakes_end_in_one_error_line(
    tmp_path: Path, args: list[str], message: str, monkeypatch, capsys
) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = _compare_cli(monkeypatch, capsys, *(a.format(tmp=tmp_path) for a in args))
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], err


def test_compare_refuses_a_set_of_failed_runs(tmp_path: Path) -> None:
    make_run(tmp_path, "a", ["model=vae"], 1, {}, [], status="failed")
    with pytest.raises(UserError, match="none of the 1 runs finished"):
        compare_runs(find_runs([tmp_path]))


def test_configuration_ignores_seed_and_output_locations() -> None:
    assert configuration_of(
        ["seed=3", "model=vae", "paths.log_dir=/x", "hydra.sweep.dir=/y", "data=mnist"]
    ) == ("data=mnist model=vae")
    assert configuration_of(["seed=1"]) == "(defaults)"


@pytest.mark.slow
def test_seeded_multirun_becomes_a_mean_and_spread_table(tmp_path: Path, data_root: Path) -> None:
    sweep_path = sweep(tmp_path, data_root, "-m", "seed=1,2", "model.latent_dim=4,6", "trainer.max_epochs=2")
    code, _, err = run_cli("src.compare", str(sweep_path), "--out", str(tmp_path / "report"))
    assert code == 0, err[-2000:]
    comparison = json.loads((tmp_path / "report" / "compare.json").read_text())
    assert sorted(c["configuration"] for c in comparison["configurations"]) == [
        "model.latent_dim=4",
        "model.latent_dim=6",
    ]
    for configuration in comparison["configurations"]:
        assert configuration["runs"] == 2 and sorted(configuration["seeds"]) == [1, 2]
        assert configuration["scores"]["test/elbo"]["std"] is not None
        assert configuration["curves"]["val/elbo"]["step"]
    assert (tmp_path / "report" / "compare.png").stat().st_size > 0


@pytest.mark.slow  # a `python -m` start-up with a W&B run of its own
def test_compare_logs_table_and_plot_to_wandb(sweep_dir: Path, tmp_path: Path) -> None:
    from tests.wandb_records import read_records

    code, out, err = run_cli("src.compare", str(sweep_dir), "--wandb", "on", cwd=tmp_path)
    assert code == 0, err[-2000:]
    runs = list((sweep_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and "W&B run" in out
    kinds = [record.WhichOneof("record_type") for record in read_records(runs[0])]
    assert "history" in kinds and "summary" in kinds
