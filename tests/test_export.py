"""Synthetic dataset export: layout, loaders, verification, integrity, labels, W&B artifact."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import ImageFolder

from src.export.labels import class_folders, plan_labels
from src.export.verify import verify_dataset
from src.generate import generate
from src.utils.errors import UserError
from src.verify_dataset import main as verify_main
from tests.conftest import ROOT
from tests.wandb_records import read_records


def export(make_cfg, checkpoint: Path, out_dir: Path, *overrides: str):
    cfg = make_cfg(
        "generate",
        [
            f"ckpt_path={checkpoint}",
            f"out_dir={out_dir}",
            "hardware=cpu",
            "n=60",
            "batch_size=25",
            *overrides,
        ],
    )
    return generate(cfg)


def test_conditional_export_is_balanced_and_loads_with_imagefolder_and_numpy(
    make_cfg, trained_checkpoints, tmp_path
) -> None:
    out = tmp_path / "cvae"
    result = export(make_cfg, trained_checkpoints["cvae"], out)
    assert result.metrics["export/n"] == 60
    folder = ImageFolder(str(out / "images"))
    assert len(folder) == 60
    counts = np.bincount([label for _, label in folder.samples], minlength=10)
    assert counts.tolist() == [6] * 10
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["label_source"] == "conditional"
    assert [c["count"] for c in manifest["classes"]] == [6] * 10
    # ImageFolder numbers classes by sorted folder name: the same numbers as the manifest's labels.
    assert folder.classes == [c["folder"] for c in manifest["classes"]]
    arrays = np.load(out / "data.npz")
    assert arrays["images"].shape == (60, 28, 28, 1) and arrays["images"].dtype == np.uint8
    assert arrays["labels"].dtype == np.int64
    image, label = folder[7]
    assert np.array_equal(np.asarray(image.convert("L")), arrays["images"][7, :, :, 0])
    assert label == arrays["labels"][7]


def test_metadata_csv_and_manifest_provenance(make_cfg, trained_checkpoints, tmp_path) -> None:
    out = tmp_path / "vae"
    export(make_cfg, trained_checkpoints["vae"], out, "format=png")
    rows = list(csv.DictReader((out / "metadata.csv").open()))
    assert list(rows[0]) == ["file_name", "label", "source"] and len(rows) == 60
    assert all((out / row["file_name"]).is_file() for row in rows)
    assert not (out / "data.npz").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    for key in (
        "format_version",
        "n",
        "classes",
        "image_shape",
        "seed",
        "checkpoint",
        "config",
        "software",
        "created_at",
    ):
        assert key in manifest, key
    assert manifest["checkpoint"]["sha256"] and manifest["software"]["git_commit"]
    assert manifest["config"]["model"]["_target_"] == "src.models.VaeModule"


def test_same_seed_same_dataset(make_cfg, trained_checkpoints, tmp_path) -> None:
    export(make_cfg, trained_checkpoints["vae"], tmp_path / "a", "format=npz")
    export(make_cfg, trained_checkpoints["vae"], tmp_path / "b", "format=npz")
    export(make_cfg, trained_checkpoints["vae"], tmp_path / "c", "format=npz", "seed=1")
    a, b, c = (np.load(tmp_path / name / "data.npz")["images"] for name in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_verify_passes_then_names_tampered_missing_and_extra_files(
    make_cfg, trained_checkpoints, tmp_path, capsys
) -> None:
    out = tmp_path / "set"
    export(make_cfg, trained_checkpoints["cvae"], out)
    assert verify_dataset(out) == []
    assert verify_main([str(out)]) == 0
    pngs = sorted((out / "images").rglob("*.png"))
    pngs[0].write_bytes(pngs[0].read_bytes()[:-1] + b"\x00")
    pngs[1].unlink()
    (out / "images" / "notes.txt").write_text("x")
    problems = verify_dataset(out)
    rel = lambda p: p.relative_to(out).as_posix()  # noqa: E731
    assert f"altered: {rel(pngs[0])}" in problems
    assert f"missing: {rel(pngs[1])}" in problems
    assert "extra: images/notes.txt" in problems
    assert verify_main([str(out)]) == 1
    assert "Error:" in capsys.readouterr().err


def test_non_empty_out_dir_is_refused_unless_overwrite(make_cfg, trained_checkpoints, tmp_path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        export(make_cfg, trained_checkpoints["vae"], out)
    assert (out / "keep.txt").read_text() == "mine"
    export(make_cfg, trained_checkpoints["vae"], out, "overwrite=true")
    assert not (out / "keep.txt").exists() and verify_dataset(out) == []


def test_failed_export_leaves_no_directory(make_cfg, trained_checkpoints, tmp_path, monkeypatch) -> None:
    from src.export import writer

    original = writer.SyntheticDatasetWriter.add
    calls = {"n": 0}

    def failing_add(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full (test)")
        original(self, images, labels)

    monkeypatch.setattr(writer.SyntheticDatasetWriter, "add", failing_add)
    with pytest.raises(RuntimeError, match="disk full"):
        export(make_cfg, trained_checkpoints["vae"], tmp_path / "broken")
    assert list(tmp_path.iterdir()) == [p for p in tmp_path.iterdir() if p.name.startswith("run")]


@pytest.mark.slow
def test_killed_export_never_looks_complete(trained_checkpoints, tmp_path) -> None:
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "src.generate", f"ckpt_path={trained_checkpoints['vae']}", f"out_dir={out}",
         "n=200000", "batch_size=500", "format=png", "hardware=cpu", f"paths.log_dir={tmp_path / 'logs'}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".killed.partial-*/images/*/*.png")):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(tmp_path.glob(".killed.partial-*")), "the export had not started writing"
    assert not out.exists()


def test_label_plans() -> None:
    names = [str(i) for i in range(4)]
    assert torch.bincount(plan_labels("balanced", 10, names, None)).tolist() == [3, 3, 2, 2]
    train = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    assert torch.bincount(plan_labels("proportional", 20, names[:3], train), minlength=3).tolist() == [
        12,
        6,
        2,
    ]
    assert set(plan_labels([1, "3"], 8, names, None).tolist()) == {1, 3}
    with pytest.raises(UserError, match="not a class"):
        plan_labels([7], 8, names, None)
    assert class_folders(["T-shirt/top", "../etc", ""]) == ["00_T_shirt_top", "01_etc", "02_class"]


def test_labels_need_a_conditional_model(make_cfg, trained_checkpoints, tmp_path) -> None:
    with pytest.raises(UserError, match="conditional"):
        export(make_cfg, trained_checkpoints["vae"], tmp_path / "x", "labels=[1,2]")


def test_wandb_offline_run_records_the_dataset_artifact(make_cfg, trained_checkpoints, tmp_path) -> None:
    out = tmp_path / "art"
    cfg = make_cfg(
        "generate",
        [
            f"ckpt_path={trained_checkpoints['cvae']}",
            f"out_dir={out}",
            "hardware=cpu",
            "n=30",
            "logger=wandb",
            "logger.wandb.mode=offline",
        ],
    )
    generate(cfg)
    runs = list(Path(cfg.paths.output_dir).glob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    artifacts = [r.artifact for r in read_records(runs[0]) if r.WhichOneof("record_type") == "artifact"]
    assert [(a.type, a.name) for a in artifacts] == [("dataset", "synthetic-art")]
    metadata = json.loads(artifacts[0].metadata)
    assert metadata["n"] == 30 and metadata["label_source"] == "conditional"


def test_utility_report_trains_on_synthetic_real_and_both(make_cfg, trained_checkpoints, tmp_path) -> None:
    from src.evaluate_dataset import evaluate_dataset

    out = tmp_path / "cvae_set"
    export(make_cfg, trained_checkpoints["cvae"], out, "n=80")
    cfg = make_cfg(
        "evaluate_dataset",
        [f"synthetic={out}", "data.source=files", "hardware=cpu", "classifier.epochs=2", "scores=false"],
    )
    result = evaluate_dataset(cfg)
    report = json.loads((tmp_path / "cvae_set.report.json").read_text())
    accuracy = report["utility"]["accuracy"]
    assert set(accuracy) == {"synthetic", "real", "real+synthetic"}
    assert all(0.0 <= value <= 1.0 for value in accuracy.values())
    assert report["utility"]["n_synthetic"] == 80 and report["utility"]["n_real"] == 80
    assert result.metrics["utility/cas_ratio"] == pytest.approx(accuracy["synthetic"] / accuracy["real"])
    assert "| synthetic only (CAS) | 80 |" in (tmp_path / "cvae_set.report.md").read_text()
    assert verify_dataset(out) == []  # the report sits beside the dataset, not inside it


def test_utility_report_refuses_a_tampered_dataset(make_cfg, trained_checkpoints, tmp_path) -> None:
    from src.evaluate_dataset import evaluate_dataset

    out = tmp_path / "set"
    export(make_cfg, trained_checkpoints["cvae"], out)
    (out / "data.npz").write_bytes(b"tampered")
    cfg = make_cfg("evaluate_dataset", [f"synthetic={out}", "data.source=files", "hardware=cpu"])
    with pytest.raises(UserError, match=r"fails verification.*altered: data\.npz"):
        evaluate_dataset(cfg)


def test_png_writers_lend_torch_their_cores_back_on_exit_even_after_a_failure(tmp_path) -> None:
    """While the PNG threads run, torch's generation keeps the other cores (spinning OpenMP threads on
    oversubscribed cores slow the encoders); the caller's thread count comes back, failure or not."""
    from src.export.writer import SyntheticDatasetWriter

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        images, labels = np.zeros((3, 28, 28, 1), np.uint8), np.array([0, 1, 1])
        with SyntheticDatasetWriter(
            tmp_path / "ok", ["0", "1"], png=True, npz=False, workers=2, n_total=3
        ) as w:
            assert torch.get_num_threads() == 2
            w.add(images, labels)
            w.finish({})
        assert torch.get_num_threads() == 4 and len(list((tmp_path / "ok").glob("images/*/*.png"))) == 3
        failing = SyntheticDatasetWriter(tmp_path / "no", ["0"], png=True, npz=False, workers=8, n_total=1)
        with pytest.raises(RuntimeError, match="test"), failing:
            assert torch.get_num_threads() == 1
            raise RuntimeError("test")
        assert torch.get_num_threads() == 4 and not (tmp_path / "no").exists()
    finally:
        torch.set_num_threads(before)
