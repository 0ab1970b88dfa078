"""Augmentation report: arms, seeds' spread, scarce classes, NAS, files, and no look at the test labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from src.evaluate_dataset import evaluate_dataset
from src.generate import generate
from src.metrics.augmentation import Protocol, augmentation_report, plan_arms, scarce_classes
from src.metrics.augmentation_output import arm_scores
from src.metrics.classifier_training import TrainingRecipe


def test_scores_by_hand() -> None:
    target = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = torch.tensor([0, 0, 0, 1, 1, 0, 2, 2])
    scores = arm_scores(predicted, target, 3, scarce=[1])
    assert scores["accuracy"] == pytest.approx(6 / 8)
    assert scores["per_class_recall"] == pytest.approx([3 / 4, 1 / 2, 1.0])
    assert scores["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    assert scores["scarce_recall"] == pytest.approx(1 / 2)
    precision = [3 / 4, 1 / 2, 1.0]  # predicted 0: 4 (3 right), 1: 2 (1 right), 2: 2 (2 right)
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, scores["per_class_recall"])]
    assert scores["macro_f1"] == pytest.approx(sum(f1) / 3)


def test_arms_and_fill_counts() -> None:
    y_real = torch.tensor([0] * 10 + [1] * 2 + [2] * 6)
    x_real = torch.zeros(len(y_real), 1, 8, 8, dtype=torch.uint8)
    y_syn = torch.arange(3).repeat(20)
    x_syn = torch.ones(len(y_syn), 1, 8, 8, dtype=torch.uint8)
    arms, skipped = plan_arms((x_real, y_real), (x_syn, y_syn), 3, [0.5, 1, 4], classic=True)
    half = arms["real+synthetic x0.5"]
    assert [len(pool) for pool in half.pools] == [18, 9] and half.n_train == 18 + 9
    assert "real+synthetic x4" in skipped  # 72 needed, 60 in the pool
    fill = arms["real+fill"]
    real_pool, fill_pool = fill.pools
    assert (real_pool.targets.sum(0) + fill_pool.targets.sum(0)).tolist() == [10, 10, 10]
    assert int(fill_pool.x.sum()) == 8 * 64 + 4 * 64  # exactly the missing 8 + 4 synthetic images
    both = arms["real+classic+synthetic"]
    assert both.classic and both.info["with"] == "real+fill" and both.pools is fill.pools
    assert {"real+oversample", "real+class_weights", "real+smote"} <= set(arms)
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
        protocol=Protocol(min_steps=4),
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
            "augmentation.seeds=[0,1]",
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
        "real+oversample",
        "real+class_weights",
        "real+smote",
    }
    assert report["scarce_classes"] == [3] and report["real_class_counts"][3] == 4
    for cell in arms.values():
        assert len(cell["accuracy"]["values"]) == 2 and cell["accuracy"]["std"] >= 0
        assert len(cell["per_class_recall"]["mean"]) == 10 and "scarce_recall" in cell and "macro_f1" in cell
    assert arms["real+synthetic x1"]["nas"] == pytest.approx(
        arms["real+synthetic x1"]["accuracy"]["mean"] - arms["real"]["accuracy"]["mean"]
    )
    markdown = Path(f"{out}.augmentation.md").read_text()
    assert "3 - three*" in markdown and "NAS" in markdown and "## Protocol" in markdown
    assert Path(f"{out}.augmentation.png").stat().st_size > 1000
    assert result.metrics["augmentation/real/accuracy"] == arms["real"]["accuracy"]["mean"]
    assert any(line.startswith("augmentation (rare-class recall") for line in result.summary)
    assert result.metrics["augmentation/real_smote/macro_f1"] == arms["real+smote"]["macro_f1"]["mean"]
    assert (
        result.metrics["augmentation/teacher/val_accuracy"] == report["protocol"]["teacher"]["val_accuracy"]
    )
    # The budget: the real-only arm's steps; at real_share 0.5 the mixed arms twice as many.
    assert report["classifier"]["steps"] == arms["real"]["steps"] == 3
    assert arms["real+fill"]["real_per_batch"] * 2 == arms["real+fill"]["batch"]
    assert arms["real+fill"]["steps"] == 6 and arms["synthetic"]["steps"] == 3


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["augmentation.seeds=[]"], ["augmentation.seeds=[]"]),
        (["augmentation.ratios=[-1]"], ["augmentation.ratios"]),
        (["augmentation.classic=maybe"], ["augmentation.classic"]),
        (["augmentation.real_share=1"], ["augmentation.real_share"]),
        (["augmentation.synthetic_labels=teacher"], ["augmentation.synthetic_labels", "teacher_soft"]),
        (["augmentation.min_confidence=1.5"], ["augmentation.min_confidence"]),
        (["augmentation.synthetic_weight=-1"], ["augmentation.synthetic_weight"]),
        (["augmentation.patience=0"], ["augmentation.patience"]),
    ],
)
def test_augmentation_option_errors(args, fragments, tmp_path, capsys, data_root) -> None:
    from src.evaluate_dataset import main as evaluate_main
    from tests.test_errors import assert_one_error_line, run_main

    argv = [f"synthetic={tmp_path / 'missing'}", "augmentation.enabled=true", *args]
    code, err = run_main(evaluate_main, argv, tmp_path, capsys, data_root)
    assert code == 2
    assert_one_error_line(code, err, *fragments)
