"""The metrics callback in runs: scores and protocol in metrics.json and the logger, checkpoint
monitoring, re-scoring, toy 2-D mode statistics, and option errors."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

from src.data import MnistDataModule, Toy2DDataModule
from src.eval import evaluate
from src.metrics import DomainMetrics, ScoreOptions, score_samples
from src.metrics.cache import state_dict_sha256
from src.models.base import GenerativeModule
from src.runtime.run import read_metrics_json, run_task
from src.train import main as train_main
from src.train import train
from tests.conftest import FAST_VAE
from tests.test_errors import assert_one_error_line, run_main

IMAGE_SCORES = [
    "fid",
    "kid",
    "kid_std",
    "is",
    "is_std",
    "confident_frac",
    "precision",
    "recall",
    "density",
    "coverage",
    "p_precision",
    "p_recall",
    "precision_outlier_share",
    "outside_share",
    "swd",
    "swd_pixel",
    "swd_pixel_28",
    "swd_pixel_14",
    "detection_auc",
    "sharpness",
    "class_tv",
]
MEMORIZATION = ["authenticity", "copy_share", "nn_train", "nn_heldout"]


def test_train_run_records_scores_with_their_protocol_and_eval_reproduces_them(make_cfg, capsys) -> None:
    cfg = make_cfg(
        "train",
        [
            *FAST_VAE,
            "data.source=files",
            "trainer.max_epochs=2",
            "model.monitor=val/fid",
            "model.monitor_mode=min",
        ],
    )
    run_task(train, cfg)
    out = Path(cfg.paths.output_dir)
    metrics = read_metrics_json(out)
    assert metrics["status"] == "ok"
    # The console ends with the test scores beside real vs real (24 held-out val images) and the verdict.
    printed = capsys.readouterr().out
    assert "test scores: 64 samples vs 60 real test images (real vs real: 24 held-out val images)" in printed
    assert "  verdict: fidelity " in printed and printed.rstrip().endswith(f"ok: {out / 'metrics.json'}")
    assert metrics["protocol"]["test"]["reference"]["n"] == 24
    assert metrics["protocol"]["test"]["reference/real/fid"] > 0
    for stage in ("val", "test"):
        for name in IMAGE_SCORES + MEMORIZATION:
            assert math.isfinite(metrics[f"{stage}/{name}"]), f"{stage}/{name}"
    protocol = metrics["protocol"]
    # 24 val / 60 test images: too few for k-NN scores, and the run says so in metrics.json.
    assert any(w.startswith("val: the real val split has 24 images") for w in metrics["warnings"])
    assert protocol["val"]["n_fake_rule"] == "metrics.n_fake_val"
    cached = list(
        (Path(cfg.paths.cache_dir) / "extractors").glob(
            f"mnist-lenet-{protocol['val']['extractor_key'][:16]}.pt"
        )
    )
    assert len(cached) == 1
    sha = state_dict_sha256(torch.load(cached[0], weights_only=True)["state_dict"])
    for stage, n_real in (("val", 24), ("test", 60)):
        entry = protocol[stage]
        assert entry["extractor"] == "domain-lenet-classes" and entry["extractor_sha256"] == sha
        assert (entry["split"], entry["n_real"], entry["n_fake"], entry["seed"]) == (stage, n_real, 64, 0)
        assert (entry["pr_k"], entry["dc_k"], entry["chunk_size"], entry["kid_subset_size"]) == (
            2,
            2,
            32,
            n_real,
        )
        assert entry["scores"] == IMAGE_SCORES + MEMORIZATION
    # The logger has the protocol too.
    hparams = yaml.safe_load((out / "csv" / "hparams.yaml").read_text())
    assert hparams["protocol/test/extractor_sha256"] == sha and hparams["protocol/val/n_fake"] == 64
    # val/fid selected best.ckpt: the checkpoint holds the lowest val/fid of the run.
    with open(out / "csv" / "metrics.csv") as handle:
        val_fids = [float(row["val/fid"]) for row in csv.DictReader(handle) if row.get("val/fid")]
    assert len(val_fids) == 2
    checkpoint = torch.load(out / "checkpoints" / "best.ckpt", weights_only=False)
    state = next(v for k, v in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint"))
    assert state["monitor"] == "val/fid" and float(state["best_model_score"]) == pytest.approx(min(val_fids))
    # Re-scoring the tested checkpoint gives the same numbers and protocol.
    rescored = evaluate(make_cfg("eval", [f"ckpt_path={protocol['tested_checkpoint']}", "hardware=cpu"]))
    for name in IMAGE_SCORES + MEMORIZATION:
        assert rescored.metrics[f"test/{name}"] == metrics[f"test/{name}"], name
    assert rescored.protocol["test"] == protocol["test"]


class NoisyCopies(GenerativeModule):
    """A stand-in generator: training images plus seeded noise (images), or the mixture's modes
    plus Gaussian noise of the data's sigma (points)."""

    def __init__(self, bank: torch.Tensor, noise: float, points: bool = False) -> None:
        shape = (
            {"image_size": None, "channels": None, "point_dim": 2}
            if points
            else {
                "image_size": bank.shape[-1],
                "channels": bank.shape[1],
            }
        )
        super().__init__(
            **shape, num_classes=0, conditional=False, monitor=None, monitor_mode="min", name="stub"
        )
        self.register_buffer("bank", bank.float() if points else bank.float() / 255)
        self.noise = noise
        self.layer = torch.nn.Linear(1, 1)

    def _generate(self, n, labels, generator):
        pick = torch.randint(len(self.bank), (n,), generator=generator, device=self.device)
        noise = torch.randn((n, *self.bank.shape[1:]), generator=generator, device=self.device)
        out = self.bank[pick] + self.noise * noise
        return out if self.data_kind == "points" else out.clamp(0, 1) * 2 - 1

    def test_step(self, batch, batch_idx):
        return None


def run_test(model: GenerativeModule, datamodule, callback) -> dict[str, float]:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[callback],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_test_batches=1,
    )
    return trainer.test(model, datamodule=datamodule, verbose=False)[0]


def test_callback_scores_equal_score_samples_with_the_model_sampler(data_root: Path, cache_dir: Path) -> None:
    datamodule = MnistDataModule(data_dir=str(data_root), source="files", batch_size=16)
    datamodule.prepare_data()
    model = NoisyCopies(datamodule.split("train")[0][:50], noise=0.1)
    callback = DomainMetrics(
        cache_dir=str(cache_dir), n_fake_test=100, chunk_size=32, kid_subsets=10, extractor_epochs=2, seed=5
    )
    callback.prepare(datamodule)
    logged = run_test(model, datamodule, callback)
    options = ScoreOptions(kid_subsets=10, seed=5)
    scores, protocol = score_samples(
        model.sample,
        datamodule,
        "test",
        extractor=callback.extractor,
        n_fake=100,
        chunk_size=32,
        options=options,
    )
    for name, value in scores.items():
        assert logged[f"test/{name}"] == pytest.approx(value, rel=1e-6), name
    assert protocol["n_fake"] == callback.protocol["test"]["n_fake"] == 100
    # Copies of 50 training images: memorization shows.
    assert scores["authenticity"] < 0.2 and scores["nn_train"] < scores["nn_heldout"]


def test_points_get_the_pacgan_mode_statistics(tmp_path: Path, cache_dir: Path) -> None:
    datamodule = Toy2DDataModule(
        mixture="ring8", data_dir=str(tmp_path), n_train=1000, n_val=100, n_test=100, batch_size=50
    )
    callback = DomainMetrics(cache_dir=str(cache_dir))
    callback.prepare(datamodule)
    model = NoisyCopies(datamodule.modes[:6], noise=datamodule.sigma, points=True)
    logged = run_test(model, datamodule, callback)
    assert logged["test/modes"] == 6.0 and logged["test/hq_frac"] > 0.95
    assert logged["test/rkl"] == pytest.approx(math.log(8 / 6), abs=0.02)
    # A quarter of the real mass (2 of 8 modes) has to move to a neighbouring mode, 2 sin(pi / 8) away:
    # exact W1 >= 0.25 * 0.765 minus the noise scale, and W1 <= W2 < 1.
    assert 0.18 < logged["test/w1"] < 0.6 and logged["test/w1"] <= logged["test/w2"] < 1.0
    protocol = callback.protocol["test"]
    assert protocol["protocol"] == "pacgan-modes" and protocol["n_fake"] == 2500 and protocol["sigma"] == 0.01


BAD_METRICS_INPUT = {
    "too few fakes": (["metrics.n_fake_val=5"], ["metrics.n_fake_val=5 is too few", "at least 10"]),
    "k larger than a split": (["metrics.dc_k=30"], ["val split has 24 images"]),
    "unknown option": (["+metrics.inception_weights=/x.pth"], ["metrics.inception_weights is not an option"]),
    "wrong type": (["metrics.kid=maybe"], ["metrics.kid='maybe'"]),
    "unscored monitor epochs": (
        ["metrics.every_n_epochs=2", "model.monitor=val/fid"],
        ["callbacks.model_checkpoint.every_n_epochs=2"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_METRICS_INPUT))
def test_bad_metrics_options_end_in_one_error_line(
    case: str, tmp_path: Path, capsys, data_root: Path
) -> None:
    args, fragments = BAD_METRICS_INPUT[case]
    base = ["data.source=files", "data.batch_size=16", "trainer.max_epochs=2", "metrics.extractor_epochs=1"]
    code, err = run_main(train_main, [*base, *args], tmp_path, capsys, data_root)
    assert code == 2
    assert_one_error_line(code, err, *fragments)
    assert not list((tmp_path / "logs").rglob("*.ckpt"))


def test_tensorboard_gets_the_protocol_as_text(make_cfg) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg("train", [*FAST_VAE, "data.source=files", "logger=tensorboard", "test=false"])
    run_task(train, cfg)
    events = EventAccumulator(str(Path(cfg.paths.output_dir) / "tb"), size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    assert "protocol/val/text_summary" in tags, tags
    text = events.Tensors("protocol/val/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "protocol/val/extractor_sha256" in text and "protocol/val/n_fake: 64" in text
    assert any(tag.startswith("samples/") for tag in events.Tags()["images"])
