"""The per-class quality gate: a real-data classifier judges every class a conditional model generates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from src.export.exporter import ExportOptions, FillOptions, export_dataset
from src.export.fill import generate_missing
from src.export.gate import ClassGate, GateClassifier, gate_card_lines, gate_lines
from src.generate import generate
from src.generate import main as generate_main
from src.runtime.config_check import task_options
from src.runtime.run import collect_warnings
from src.utils.errors import UserError
from tests.test_errors import assert_one_error_line, run_main

NAMES = ["a", "b", "c", "d"]


class _ConditionalStub:
    """A conditional 'model' drawing class ``c`` as an image whose pixels are ``c * 20``, except:
    class 3 always comes out looking like class 1, and class 2 only every other draw (else like 0)."""

    num_classes = 4
    device = torch.device("cpu")
    sample_shape = (1, 4, 4)
    data_kind = "image"
    image_size = 4
    channels = 1

    def eval(self) -> _ConditionalStub:
        return self

    def sample(self, n: int, labels=None, generator=None) -> torch.Tensor:
        shown = labels.cpu().clone()
        shown[shown == 3] = 1
        coin = torch.rand(n, generator=generator) < 0.5
        shown[(shown == 2) & coin] = 0
        return (shown.float() * 20 / 255).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()


def _probabilities(images: torch.Tensor) -> torch.Tensor:
    """The stub classifier: reads the class off the pixel value."""
    return torch.nn.functional.one_hot((images[:, 0, 0, 0].float() / 20).round().long(), 4).float()


def _classifier() -> GateClassifier:
    # Real test images of every class, each drawn as itself: recall 1 everywhere.
    y = torch.arange(4).repeat_interleave(5)
    x = (y * 20).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()
    return GateClassifier(_probabilities, (x, y), "test", {"extractor": "stub"})


def _classes(images: torch.Tensor) -> torch.Tensor:
    return (images[:, 0, 0, 0].float() / 20).round().long()


def test_warn_names_the_class_the_classifier_never_agrees_with() -> None:
    gate = ClassGate(_classifier(), NAMES, [6, 6, 0, 6], "warn", 0.5)
    options = ExportOptions(fill="balance", batch_size=5, seed=0)
    images, labels, stats = generate_missing(_ConditionalStub(), [6, 6, 0, 6], options, None, NAMES, gate)
    # warn keeps every image, the bad ones included (d's images look like b).
    assert labels.tolist() == [0] * 6 + [1] * 6 + [3] * 6 and stats["acceptance_rate"] == 1.0
    assert _classes(images[labels == 3]).tolist() == [1] * 6
    report = gate.report()
    rows = {row["name"]: row for row in report["classes"]}
    assert set(rows) == {"a", "b", "d"}  # c asked for nothing
    assert rows["d"]["agreement"] == 0.0 and rows["d"]["agreed"] == 0 and rows["d"]["generated"] == 6
    assert rows["a"]["agreement"] == rows["b"]["agreement"] == 1.0  # the classes it agrees with pass
    assert all(row["real_recall"] == 1.0 and row["n_real"] == 5 for row in rows.values())
    assert report["failed"] == ["d"] and report["real_split"] == "test"
    assert len(report["warnings"]) == 1 and report["warnings"][0].startswith("class d:")
    # metrics.json collects the warnings of the gate's protocol entry, prefixed with it.
    assert collect_warnings({"gate": report}) == [f"gate: {report['warnings'][0]}"]
    assert any("* under min_agreement: d" in line for line in gate_lines(report))
    card = "\n".join(gate_card_lines(report))
    assert "| d | 6 | 0 | 0.000 | 1.000 | under min_agreement |" in card
    assert "| a | 6 | 6 | 1.000 | 1.000 | ok |" in card


def test_filter_keeps_only_accepted_samples_and_reports_acceptance() -> None:
    requested = [0, 4, 40, 3]
    # min_agreement 0.2: class c (accepted about half the time) passes, d (never) fails.
    gate = ClassGate(_classifier(), NAMES, requested, "filter", 0.2)
    options = ExportOptions(fill="balance", batch_size=16, seed=0, max_draws=10)
    images, labels, stats = generate_missing(_ConditionalStub(), requested, options, None, NAMES, gate)
    # Every kept image is what the classifier calls its class; class 2 drew more to reach its count,
    # class 3 (never accepted) stays empty after max_draws draws per requested image.
    assert torch.equal(_classes(images), labels)
    assert torch.bincount(labels, minlength=4).tolist() == [0, 4, 40, 0]
    report = gate.report()
    rows = {row["name"]: row for row in report["classes"]}
    assert rows["c"]["kept"] == 40 and rows["c"]["generated"] > 40
    assert 0.3 < rows["c"]["acceptance_rate"] < 0.7 and rows["c"]["acceptance_rate"] == rows["c"]["agreement"]
    assert rows["d"]["kept"] == 0 and rows["d"]["generated"] == 10 * 3 and rows["d"]["acceptance_rate"] == 0.0
    assert report["failed"] == ["d"]
    assert any(w.startswith("class d: gate=filter kept 0 of 3") for w in report["warnings"])
    assert stats["draws"] == sum(row["generated"] for row in rows.values())
    assert stats["acceptance_rate"] == pytest.approx(44 / stats["draws"])


def test_filter_in_a_plain_conditional_export(tmp_path) -> None:
    out = tmp_path / "filtered"
    options = ExportOptions(
        n=40,
        out_dir=str(out),
        batch_size=16,
        workers=0,
        format="npz",
        score=False,
        gate="filter",
        min_agreement=0.2,
        max_draws=4,
    )
    _, manifest = export_dataset(
        _ConditionalStub(), NAMES, None, options, provenance={}, gate_classifier=_classifier()
    )
    arrays = np.load(out / "data.npz")
    labels = torch.from_numpy(arrays["labels"])
    assert torch.equal(_classes(torch.from_numpy(arrays["images"]).permute(0, 3, 1, 2)), labels)
    assert torch.bincount(labels, minlength=4).tolist() == [10, 10, 10, 0]
    assert (
        manifest["n"] == 30 and manifest["gate"]["failed"] == ["d"] and manifest["gate"]["mode"] == "filter"
    )


def test_refuse_writes_nothing(tmp_path) -> None:
    out = tmp_path / "refused"
    options = ExportOptions(n=20, out_dir=str(out), batch_size=8, workers=0, score=False, gate="refuse")
    with pytest.raises(UserError, match=r"gate=refuse: .* class\(es\) .*d \(0%\)"):
        export_dataset(_ConditionalStub(), NAMES, None, options, provenance={}, gate_classifier=_classifier())
    assert list(tmp_path.iterdir()) == []  # neither the directory nor the writer's temporary one


def test_gate_keys_from_the_config(make_cfg) -> None:
    def options(*overrides: str) -> ExportOptions:
        return task_options(ExportOptions, make_cfg("generate", ["ckpt_path=x", "out_dir=y", *overrides]))

    assert options().fill is None and options().gate_settings() == ("warn", 0.5)
    filled = options("fill=balance")
    assert filled.fill == FillOptions(target="balance") and filled.gate_settings() == ("warn", 0.5)
    assert options("fill=balance", "fill.target=500").fill.target == 500
    # A fill's own keys win; unset, they are the export's.
    assert options("fill=balance", "fill.gate=filter", "fill.min_agreement=0.8").gate_settings() == (
        "filter",
        0.8,
    )
    assert options("fill=balance", "gate=refuse").gate_settings() == ("refuse", 0.5)
    assert options("gate=filter", "min_agreement=0").gate_settings() == ("filter", 0.0)
    # In src.train the group sits under export.
    train = make_cfg("train", ["fill@export.fill=balance", "export.fill.gate=refuse"])
    assert task_options(ExportOptions, train.export, path="export").gate_settings() == ("refuse", 0.5)


def test_refused_fill_exits_with_one_error_line_and_no_directory(
    trained_checkpoints, tmp_path, capsys, data_root
) -> None:
    # A briefly trained cVAE: at min_agreement 1 some class is always under it.
    out = tmp_path / "out"
    args = [
        f"ckpt_path={trained_checkpoints['cvae']}",
        f"out_dir={out}",
        "batch_size=50",
        "workers=0",
        "fill=balance",
        "fill.gate=refuse",
        "fill.min_agreement=1",
    ]
    code, err = run_main(generate_main, args, tmp_path, capsys, data_root)
    assert code == 2
    assert_one_error_line(code, err, "gate=refuse", "class(es)", "nothing was exported")
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


def test_conditional_export_reports_per_class_agreement(make_cfg, trained_checkpoints, tmp_path) -> None:
    out = tmp_path / "export"
    cfg = make_cfg(
        "generate",
        [
            f"ckpt_path={trained_checkpoints['cvae']}",
            f"out_dir={out}",
            "hardware=cpu",
            "n=40",
            "workers=0",
            "score=false",
            "min_agreement=1",
        ],
    )
    result = generate(cfg)
    manifest = json.loads((out / "manifest.json").read_text())
    gate = manifest["gate"]
    assert [row["generated"] for row in gate["classes"]] == [4] * 10 and gate["min_agreement"] == 1.0
    failed = [row["name"] for row in gate["classes"] if row["agreement"] < 1]
    assert gate["failed"] == failed and failed  # warn: named, and everything is still exported
    assert manifest["n"] == 40
    warnings = collect_warnings(result.protocol)
    assert [w for w in warnings if w.startswith("gate: class ")] == [f"gate: {w}" for w in gate["warnings"]]
    assert result.metrics["export/gate_failed"] == len(failed)
    assert (
        "| class | generated | agreed | agreement | real recall | status |" in (out / "README.md").read_text()
    )


def test_unconditional_exports_carry_no_gate(make_cfg, trained_checkpoints, tmp_path) -> None:
    out = tmp_path / "export"
    cfg = make_cfg(
        "generate",
        [f"ckpt_path={trained_checkpoints['vae']}", f"out_dir={out}", "hardware=cpu", "n=20", "score=false"],
    )
    generate(cfg)
    assert "gate" not in json.loads((Path(out) / "manifest.json").read_text())
