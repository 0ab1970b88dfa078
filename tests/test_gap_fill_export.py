"""Class-targeted generation: filling a real training split, real + synthetic exports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import ImageFolder

from src.export.fill import fill_plan
from src.export.reader import read_export
from src.export.verify import verify_dataset
from src.generate import generate
from src.generate import main as generate_main
from src.runtime.build import load_trained_run
from src.utils.errors import UserError
from tests.test_errors import assert_one_error_line, run_main


def _fill(make_cfg, checkpoint: Path, out_dir: Path, *overrides: str):
    cfg = make_cfg(
        "generate",
        [
            f"ckpt_path={checkpoint}",
            f"out_dir={out_dir}",
            "hardware=cpu",
            "batch_size=25",
            "workers=0",
            *overrides,
        ],
    )
    return cfg, generate(cfg)


def _real_counts(make_cfg, checkpoint: Path) -> list[int]:
    cfg = make_cfg("generate", [f"ckpt_path={checkpoint}", "out_dir=unused", "hardware=cpu"])
    run = load_trained_run(cfg, checkpoint)
    run.datamodule.setup()
    return run.datamodule.train_class_counts()


def test_fill_plan_counts() -> None:
    labels = torch.tensor([0] * 5 + [1] * 2 + [2] * 7)
    assert fill_plan(labels, 3, "balance") == ([5, 2, 7], [7, 7, 7], [2, 5, 0])
    assert fill_plan(labels, 3, 6) == ([5, 2, 7], [6, 6, 7], [1, 4, 0])


def test_conditional_fill_to_balance_generates_exactly_the_missing_count(
    make_cfg, trained_checkpoints, tmp_path
) -> None:
    have = _real_counts(make_cfg, trained_checkpoints["cvae"])
    out = tmp_path / "balanced"
    _, result = _fill(make_cfg, trained_checkpoints["cvae"], out, "fill=balance")
    largest = max(have)
    missing = [largest - h for h in have]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sources"]["real"]["per_class"] == have
    assert manifest["sources"]["synthetic"]["per_class"] == missing
    assert manifest["fill"]["generated_per_class"] == missing and manifest["fill"]["method"] == "conditional"
    assert manifest["n"] == 10 * largest == result.metrics["export/n"]
    assert result.metrics["export/n_synthetic"] == sum(missing)
    assert [c["real"] + c["synthetic"] for c in manifest["classes"]] == [largest] * 10
    assert verify_dataset(out) == []
    # The per-class gate judged every class that got generated images (warn: all of them kept).
    gate = manifest["gate"]
    assert gate["mode"] == "warn" and gate["min_agreement"] == 0.5 and gate["real_split"] == "test"
    assert [row["index"] for row in gate["classes"]] == [c for c in range(10) if missing[c]]
    for row in gate["classes"]:
        assert row["generated"] == missing[row["index"]] and 0 <= row["agreement"] <= 1
        assert row["agreed"] == round(row["agreement"] * row["generated"]) and row["n_real"] is not None
    assert gate["failed"] == [row["name"] for row in gate["classes"] if row["agreement"] < 0.5]
    assert any(line.startswith("per-class gate (gate=warn") for line in result.summary)
    assert "## Per-class agreement" in (out / "README.md").read_text()

    # One dataset through torchvision's ImageFolder: every class at the target.
    folder = ImageFolder(str(out / "images"))
    assert np.bincount([label for _, label in folder.samples], minlength=10).tolist() == [largest] * 10
    # metadata.csv (Hugging Face imagefolder's format: file_name relative to the root, extra columns
    # become features) lists every image once, with its label and source.
    with open(out / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["file_name", "label", "source"]
    assert sorted(row["file_name"] for row in rows) == sorted(
        Path(path).relative_to(out).as_posix() for path, _ in folder.samples
    )
    by_path = {row["file_name"]: row for row in rows}
    sources = {"real": [0] * 10, "synthetic": [0] * 10}
    for path, label in folder.samples:
        row = by_path[Path(path).relative_to(out).as_posix()]
        assert int(row["label"]) == label
        sources[row["source"]][label] += 1
    assert sources == {"real": have, "synthetic": missing}

    # The real part is the training split itself, bit for bit.
    exported = read_export(out)
    x_real, _ = exported.only("real")
    cfg = make_cfg("generate", [f"ckpt_path={trained_checkpoints['cvae']}", "out_dir=unused", "hardware=cpu"])
    run = load_trained_run(cfg, trained_checkpoints["cvae"])
    assert torch.equal(x_real, run.datamodule.split("train")[0].cpu())


def test_fill_to_n_per_class_and_without_real_images(make_cfg, trained_checkpoints, tmp_path) -> None:
    have = _real_counts(make_cfg, trained_checkpoints["cvae"])
    target = sorted(have)[5]
    out = tmp_path / "n"
    _fill(
        make_cfg,
        trained_checkpoints["cvae"],
        out,
        "fill=balance",
        f"fill.target={target}",
        "include_real=false",
        "format=npz",
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sources"] == {
        "synthetic": {
            "n": sum(max(0, target - h) for h in have),
            "per_class": [max(0, target - h) for h in have],
        }
    }
    arrays = np.load(out / "data.npz")
    assert set(arrays["sources"].tolist()) == {"synthetic"}
    assert np.bincount(arrays["labels"], minlength=10).tolist() == [max(0, target - h) for h in have]


class _StubModel:
    """Unconditional 'model' whose samples carry a random class in their pixel value (class * 20)."""

    num_classes = 0
    device = torch.device("cpu")
    sample_shape = (1, 4, 4)

    def sample(self, n: int, labels=None, generator=None) -> torch.Tensor:
        classes = torch.randint(0, 4, (n,), generator=generator)
        return (classes.float() * 20 / 255).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()


def _stub_probabilities(images: torch.Tensor) -> torch.Tensor:
    # Sure of classes 0-2; a 50/50 guess on class 3, which a threshold of 0.9 therefore never accepts.
    classes = (images[:, 0, 0, 0].float() / 20).round().long()
    probs = torch.nn.functional.one_hot(classes, 4).float()
    probs[classes == 3] = torch.tensor([0.0, 0.0, 0.5, 0.5])
    return probs


def test_unconditional_fill_by_rejection_keeps_exact_counts_and_reports_acceptance() -> None:
    from src.export.exporter import ExportOptions
    from src.export.fill import generate_missing

    options = ExportOptions(fill="balance", batch_size=16, accept_threshold=0.9, max_draws=50)
    images, labels, stats = generate_missing(_StubModel(), [5, 0, 3, 0], options, _stub_probabilities, "abcd")
    assert labels.tolist() == [0] * 5 + [2] * 3
    assert torch.equal((images[:, 0, 0, 0].float() / 20).round().long(), labels)  # each image is its class
    assert stats["method"] == "rejection" and stats["acceptance_rate"] == 8 / stats["draws"]
    assert stats["class_rate"][3] == 0.0 and 0.1 < stats["class_rate"][0] < 0.5
    # Class 3 is never accepted: bounded draws, then an error naming it.
    with pytest.raises(UserError, match=r"class\(es\) d \(2 of 2 missing"):
        generate_missing(_StubModel(), [1, 0, 0, 2], options, _stub_probabilities, "abcd")


def test_verify_names_a_changed_source(make_cfg, trained_checkpoints, tmp_path) -> None:
    out = tmp_path / "tamper"
    _fill(make_cfg, trained_checkpoints["cvae"], out, "fill=balance", "format=png")
    text = (out / "metadata.csv").read_text().replace(",real\n", ",synthetic\n", 1)
    (out / "metadata.csv").write_text(text)
    problems = verify_dataset(out)
    assert any("altered: metadata.csv" in p for p in problems)
    assert any("inconsistent" in p and "real images" in p for p in problems)


@pytest.mark.parametrize(
    ("model", "args", "fragments"),
    [
        ("cvae", ["fill=most"], ["fill/most", "balance"]),
        # The scalar form fill=N became fill.target=N: the error says so.
        ("cvae", ["fill=500"], ["fill=500", "config group", "fill=balance fill.target=N"]),
        ("cvae", ["fill=balance", "fill.target=most"], ["fill.target='most'", "balance"]),
        ("cvae", ["fill=balance", "fill.target=0"], ["fill.target=0"]),
        ("cvae", ["fill=balance", "fill.gate=strict"], ["fill.gate='strict'", "'filter'"]),
        ("cvae", ["fill=balance", "fill.min_agreement=1.5"], ["fill.min_agreement=1.5"]),
        ("cvae", ["fill=balance", "+fill.gates=warn"], ["fill.gates is not an option", "gate"]),
        ("cvae", ["fill.gate=filter"], ["fill is a config group", "fill=balance"]),
        ("cvae", ["gate=maybe"], ["gate='maybe'"]),
        ("cvae", ["min_agreement=-0.1"], ["min_agreement=-0.1"]),
        ("vae", ["fill=balance", "accept_threshold=0.999999", "max_draws=1"], ["draws", "accept_threshold"]),
    ],
)
def test_fill_errors(model, args, fragments, trained_checkpoints, tmp_path, capsys, data_root) -> None:
    out = tmp_path / "out"
    argv = [f"ckpt_path={trained_checkpoints[model]}", f"out_dir={out}", "batch_size=25", *args]
    code, err = run_main(generate_main, argv, tmp_path, capsys, data_root)
    assert code == 2
    assert_one_error_line(code, err, *fragments)
    assert not out.exists()


def test_fill_needs_labels_and_for_unconditional_models_the_classifier() -> None:
    from src.export.fill import check_fill

    with pytest.raises(UserError, match="labelled"):
        check_fill(_StubModel(), 0, None)
    # A checkpoint trained with metrics=none has no domain classifier to reject samples with.
    with pytest.raises(UserError, match="metrics=domain"):
        check_fill(_StubModel(), 4, None)
    assert check_fill(_StubModel(), 4, _stub_probabilities) == "rejection"
