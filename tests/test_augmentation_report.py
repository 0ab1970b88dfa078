"""Augmentation report: arms, seeds' spread, scarce classes, NAS, files, and no look at the test labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from src.evaluate_dataset import evaluate_dataset
from src.generate import generate
from src.metrics.augmentation import _scores, augmentation_report, plan_arms, scarce_classes
from src.metrics.classifier_training import TrainingRecipe


def test_scores_by_hand() -> None:
    target = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = torch.tensor([0, 0, 0, 1, 1, 0, 2, 2])
    scores = _scores(predicted, target, 3, scarce=[1])
    assert scores["accuracy"] == pytest.approx(6 / 8)
    assert scores["per_class_recall"] == pytest.approx([3 / 4, 1 / 2, 1.0])
    assert scores["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    assert scores["scarce_recall"] == pytest.approx(1 / 2)


def test_arms_and_fill_counts() -> None:
    y_real = torch.tensor([0] * 10 + [1] * 2 + [2] * 6)
    x_real = torch.zeros(len(y_real), 1, 8, 8, dtype=torch.uint8)
    y_syn = torch.arange(3).repeat(20)
    x_syn = torch.ones(len(y_syn), 1, 8, 8, dtype=torch.uint8)
    arms, skipped = plan_arms((x_real, y_real), (x_syn, y_syn), 3, [0.5, 1, 4], classic=True)
    assert len(arms["real+synthetic x0.5"]["x"]) == 18 + 9
    assert "real+synthetic x4" in skipped  # 72 needed, 60 in the pool
    fill = arms["real+fill"]
    assert torch.bincount(fill["y"], minlength=3).tolist() == [10, 10, 10]
    assert int(fill["x"].sum()) == 8 * 64 + 4 * 64  # exactly the missing 8 + 4 synthetic images
    assert arms["real+classic+synthetic"]["classic"] and arms["real+classic+synthetic"]["with"] == "real+fill"
    assert scarce_classes([10, 2, 6]) == [1]


def test_model_selection_never_sees_the_test_labels(mnist_files, monkeypatch) -> None:
    import src.metrics.augmentation as module

    predictions: list[torch.Tensor] = []
    original = module.classifier_predictions
    monkeypatch.setattr(
        module, "classifier_predictions", lambda *a: predictions.append(original(*a)) or predictions[-1]
    )
    x, y = mnist_files.split("train")
    x_test, y_test = mnist_files.split("test")
    kwargs = dict(
        real=(x[:80], y[:80]),
        val=mnist_files.split("val"),
        synthetic=(x[80:160], y[80:160]),
        num_classes=10,
        class_names=mnist_files.class_names,
        recipe=TrainingRecipe(epochs=2),
        seeds=[0],
        ratios=[1.0],
        classic=False,
        min_steps=4,
    )
    first = augmentation_report(test=(x_test, y_test), **kwargs)
    shuffled = y_test[torch.randperm(len(y_test), generator=torch.Generator().manual_seed(0))]
    augmentation_report(test=(x_test, shuffled), **kwargs)
    half = len(predictions) // 2
    for a, b in zip(predictions[:half], predictions[half:]):
        assert torch.equal(a, b)
    assert {"real", "real+synthetic x1", "synthetic"} <= set(first["arms"])


def test_evaluate_dataset_writes_the_augmentation_report(make_cfg, trained_checkpoints, tmp_path) -> None:
    out = tmp_path / "pool"
    generate(
        make_cfg(
            "generate",
            [
                f"ckpt_path={trained_checkpoints['cvae']}",
                f"out_dir={out}",
                "hardware=cpu",
                "n=300",
                "score=false",
            ],
        )
    )
    cfg = make_cfg(
        "evaluate_dataset",
        [
            f"synthetic={out}",
            "data.source=files",
            "hardware=cpu",
            "scores=false",
            "classifier.epochs=1",
            "augmentation.enabled=true",
            "augmentation.seeds=[0,1,2]",
            "augmentation.ratios=[0.5,1]",
            "augmentation.min_steps=3",
            "data.subset.per_class={3:4}",
        ],
    )
    result = evaluate_dataset(cfg)
    report = json.loads(Path(f"{out}.augmentation.json").read_text())
    arms = report["arms"]
    assert set(arms) == {
        "real",
        "real+synthetic x0.5",
        "real+synthetic x1",
        "real+fill",
        "synthetic",
        "real+classic",
        "real+classic+synthetic",
    }
    assert report["scarce_classes"] == [3] and report["real_class_counts"][3] == 4
    for cell in arms.values():
        assert len(cell["accuracy"]["values"]) == 3 and cell["accuracy"]["std"] >= 0
        assert len(cell["per_class_recall"]["mean"]) == 10 and "scarce_recall" in cell
    assert arms["real+synthetic x1"]["nas"] == pytest.approx(
        arms["real+synthetic x1"]["accuracy"]["mean"] - arms["real"]["accuracy"]["mean"]
    )
    markdown = Path(f"{out}.augmentation.md").read_text()
    assert "3 - three*" in markdown and "NAS" in markdown
    assert Path(f"{out}.augmentation.png").stat().st_size > 1000
    assert result.metrics["augmentation/real/accuracy"] == arms["real"]["accuracy"]["mean"]
    assert report["classifier"]["steps"] == 3  # the same budget for every arm


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["augmentation.seeds=[]"], ["augmentation.seeds=[]"]),
        (["augmentation.ratios=[-1]"], ["augmentation.ratios"]),
        (["augmentation.classic=maybe"], ["augmentation.classic"]),
    ],
)
def test_augmentation_option_errors(args, fragments, tmp_path, capsys, data_root) -> None:
    from src.evaluate_dataset import main as evaluate_main
    from tests.test_errors import assert_one_error_line, run_main

    argv = [f"synthetic={tmp_path / 'missing'}", "augmentation.enabled=true", *args]
    code, err = run_main(evaluate_main, argv, tmp_path, capsys, data_root)
    assert code == 2
    assert_one_error_line(code, err, *fragments)
