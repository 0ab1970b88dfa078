"""The augmentation protocol: real share per batch, the budget rule, teacher labels, the confidence
filter, the synthetic loss weight, the baselines (oversampling, class weights, SMOTE) and the
protocol written in the report. Tiny 8x8 images of 3 classes."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from src.metrics import augmentation_baselines as baselines
from src.metrics.augmentation import (
    Protocol,
    arm_schedule,
    augmentation_report,
    label_synthetic,
    labelling_summary,
    plan_arms,
    training_steps,
)
from src.metrics.augmentation_output import flat_augmentation, report_markdown
from src.metrics.augmentation_training import fit_arm, one_hot, weighted_loss
from src.metrics.classifier_training import TrainingRecipe


def _images(counts: list[int], seed: int = 0, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c: a bright vertical band at columns 2c, 2c+1, plus noise (learnable in a few steps)."""
    generator = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for c, n in enumerate(counts):
        base = torch.zeros(1, size, size)
        base[0, :, 2 * c : 2 * c + 2] = 200
        xs.append((base + 55 * torch.rand(n, 1, size, size, generator=generator)).to(torch.uint8))
        ys.append(torch.full((n,), c))
    return torch.cat(xs), torch.cat(ys)


REAL = _images([24, 4, 20])
SYNTHETIC = _images([30, 30, 30], seed=1)
VAL = _images([6, 6, 6], seed=2)
RECIPE = TrainingRecipe(epochs=2, batch_size=16)


def _fit(arm, schedule, on_batch=None, **kwargs):
    return fit_arm(
        arm.pools,
        schedule["counts"],
        schedule["steps"],
        "lenet",
        3,
        RECIPE,
        torch.device("cpu"),
        VAL,
        check_every=schedule["steps"],
        class_weights=arm.class_weights,
        on_batch=on_batch,
        **kwargs,
    )


def test_real_share_holds_in_every_batch_and_real_images_get_the_real_only_passes() -> None:
    arms, _ = plan_arms(REAL, SYNTHETIC, 3, [1.5], classic=False)
    n_real, batch = len(REAL[0]), 16
    real_steps = training_steps(n_real, RECIPE, min_steps=6)
    seen: dict[str, Counter] = {}
    for name, share in (("real", 0.5), ("real+synthetic x1.5", 0.25), ("real+oversample", 0.5)):
        schedule = arm_schedule(arms[name], batch, share, real_steps, n_real)
        batches: list[list[torch.Tensor]] = []
        _fit(arms[name], schedule, on_batch=batches.append)
        assert len(batches) == schedule["steps"]
        if name == "real+synthetic x1.5":
            assert schedule["counts"] == [4, 12]  # round(0.25 * 16) real images, the rest synthetic
            assert all(len(b[0]) == 4 and len(b[1]) == 12 for b in batches)
        seen[name] = Counter(i for b in batches for i in b[0].tolist())
    # Real only: 6 steps x 16 = 96 draws over 48 images = 2 passes; every arm gives each real image >= 2.
    assert real_steps == 6 and min(seen["real"].values()) == 2
    assert schedule["steps"] >= real_steps
    mixed = seen["real+synthetic x1.5"]
    assert len(mixed) == n_real and min(mixed.values()) >= 2  # 24 steps x 4 real = 96 draws
    assert arm_schedule(arms["real+synthetic x1.5"], batch, 0.25, real_steps, n_real)["steps"] == 24
    # Oversampled pool: 3 x 24 images, each drawn >= 2 times (so the rare class's real images many more).
    oversampled = seen["real+oversample"]
    assert len(oversampled) == 72 and min(oversampled.values()) >= 2


def test_teacher_labels_and_the_confidence_filter() -> None:
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.05, 0.05, 0.9]])
    given = torch.tensor([0, 2, 1, 2])
    soft = label_synthetic(probabilities, given, "teacher_soft", 0.0)
    hard = label_synthetic(probabilities, given, "teacher_hard", 0.0)
    assert torch.equal(soft.targets, probabilities)
    assert torch.equal(hard.targets, one_hot(probabilities.argmax(1), 3))  # hard = argmax of soft
    assert torch.equal(hard.labels, soft.labels)
    # The confidence is the teacher's probability of the label used: given labels 0.7, 0.4, 0.3, 0.9.
    assert label_synthetic(probabilities, given, "given", 0.45).keep.tolist() == [True, False, False, True]
    assert hard.keep.all() and label_synthetic(probabilities, given, "teacher_hard", 0.45).keep.tolist() == [
        True,
        True,
        False,
        True,
    ]
    summary = labelling_summary(label_synthetic(probabilities, given, "given", 0.45), probabilities, given, 3)
    rows = summary["per_class"]
    assert [r["kept_share"] for r in rows] == [1.0, 0.0, 0.5] and summary["kept_share"] == 0.5
    assert [r["agreement"] for r in rows] == [1.0, 0.0, 0.5]


def test_plans_use_only_the_kept_synthetic_images_with_their_targets_and_weight() -> None:
    y_syn = SYNTHETIC[1]
    probabilities = one_hot(y_syn, 3) * 0.8 + 0.2 / 3
    keep = torch.arange(len(y_syn)) % 3 != 0  # a third dropped
    probabilities[~keep] = torch.tensor([0.4, 0.3, 0.3])
    labelled = label_synthetic(probabilities, y_syn, "teacher_soft", 0.5)
    assert torch.equal(labelled.keep, keep)
    arms, skipped = plan_arms(REAL, SYNTHETIC, 3, [1.0, 2.0], False, labelled, synthetic_weight=0.25)
    assert "real+synthetic x2" in skipped and "after min_confidence" in skipped["real+synthetic x2"]
    pool = arms["real+synthetic x1"].pools[1]
    assert len(pool) == 48 and pool.weight == 0.25
    assert torch.allclose(pool.targets.max(1).values, torch.full((48,), 0.8 + 0.2 / 3))  # soft, kept only
    fill = arms["real+fill"].pools[1]  # class 0 needs 0, class 1 needs 20, class 2 needs 4
    assert Counter(fill.targets.argmax(1).tolist()) == {1: 20, 2: 4}
    assert len(arms["synthetic"].pools[0]) == 90  # the CAS arm: every image, its given label


def test_synthetic_weight_scales_the_loss_in_closed_form() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    weights = torch.tensor([1.0, 1.0, 0.3])  # two real examples, one synthetic at weight 0.3
    ce = [
        math.log(1 + math.exp(-2)),
        math.log(2),
        0.5 * (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))),
    ]
    expected = (ce[0] + ce[1] + 0.3 * ce[2]) / 3
    assert float(weighted_loss(logits, targets, weights)) == pytest.approx(expected, rel=1e-6)
    # In training: the real part of each batch weighs 1, the synthetic part the pool's weight.
    arms, _ = plan_arms(REAL, SYNTHETIC, 3, [1.0], False, synthetic_weight=0.3)
    weights = _loss_weights(arms["real+synthetic x1"], {"counts": [10, 6], "steps": 3})
    assert all(w[:10].eq(1).all() and w[10:].eq(0.3).all() for w in weights)


def test_oversampling_class_weights_and_smote_balance_the_classes() -> None:
    x, y = REAL
    xo, yo = baselines.oversample(x, y, 3, seed=0)
    assert torch.bincount(yo).tolist() == [24, 24, 24]
    rare = (yo == 1).nonzero().flatten()
    assert {int(v) for v in torch.unique(xo[rare].reshape(len(rare), -1), dim=0).sum(1)} == {
        int(v) for v in x[y == 1].reshape(4, -1).sum(1)
    }  # the rare class's images, repeated (each 6 times)
    assert baselines.class_weights(torch.tensor([0] * 10 + [1] * 2 + [2] * 6), 3).tolist() == pytest.approx(
        [18 / 30, 18 / 6, 18 / 18]
    )
    xs, ys = baselines.smote(x, y, 3, seed=0)
    assert torch.bincount(ys).tolist() == [24, 24, 24]
    assert torch.equal(xs[: len(x)], x) and xs.dtype == torch.uint8
    from imblearn.over_sampling import SMOTE

    flat, _ = SMOTE(k_neighbors=3, random_state=0).fit_resample(
        x.reshape(len(x), -1).float().numpy(), y.numpy()
    )
    assert torch.equal(
        xs.reshape(len(xs), -1), torch.from_numpy(flat).round().to(torch.uint8)
    )  # imbalanced-learn's
    assert baselines.smote_neighbours(torch.tensor([0, 0, 1]), 2) == 0  # one image: SMOTE impossible
    _, skipped = plan_arms(_images([5, 5, 5]), SYNTHETIC, 3, [1.0], False)
    assert {"real+oversample", "real+class_weights", "real+smote"} <= set(skipped)  # balanced: same as real


def _loss_weights(arm, schedule) -> list[torch.Tensor]:
    """The per-example loss weights of each step of a short fit of ``arm``."""
    import src.metrics.augmentation_training as training

    seen: list[torch.Tensor] = []
    original = training.weighted_loss

    def spy(logits, targets, weights):
        seen.append(weights.clone())
        return original(logits, targets, weights)

    training.weighted_loss = spy
    try:
        _fit(arm, schedule)
    finally:
        training.weighted_loss = original
    return seen


def test_class_weights_reach_the_loss() -> None:
    arms, _ = plan_arms(REAL, SYNTHETIC, 3, [], False)
    weighted = arms["real+class_weights"]
    assert weighted.class_weights.tolist() == pytest.approx([48 / 72, 48 / 12, 48 / 60])
    weights = torch.cat(_loss_weights(weighted, {"counts": [16], "steps": 2}))
    assert len(weights) == 32
    assert all(any(w == pytest.approx(c) for c in weighted.class_weights.tolist()) for w in weights.tolist())


def test_report_writes_the_protocol() -> None:
    test = _images([6, 6, 6], seed=3)
    protocol = Protocol(
        real_share=0.5, synthetic_labels="teacher_hard", min_confidence=0.2, synthetic_weight=0.5, min_steps=4
    )
    report = augmentation_report(
        REAL, VAL, test, SYNTHETIC, 3, ["a", "b", "c"], RECIPE, seeds=[0, 1], ratios=[1.0], classic=False,
        protocol=protocol,
    )  # fmt: skip
    arms = report["arms"]
    assert set(arms) == {
        "real",
        "real+synthetic x1",
        "real+fill",
        "synthetic",
        "real+oversample",
        "real+class_weights",
        "real+smote",
    }
    budget = report["protocol"]["budget"]
    assert budget["real_only_steps"] == arms["real"]["steps"] == 6  # 2 epochs of 3 batches of 16
    assert arms["real+fill"]["steps"] == 12 and arms["real+fill"]["real_per_batch"] == 8  # share 0.5 of 16
    for cell in arms.values():
        assert len(cell["accuracy"]["values"]) == 2 and 0 < cell["chosen_step"]["mean"] <= cell["steps"]
        if cell["real_passes"] is not None:
            assert cell["real_passes"] >= budget["real_only_passes"] - 1e-9
    assert (
        0 <= report["protocol"]["teacher"]["val_accuracy"] <= 1 and report["protocol"]["teacher"]["seed"] == 0
    )
    markdown = report_markdown(report, "t")
    for text in (
        "real_share 0.5",
        "8 real + 8 synthetic images per batch",
        "steps = max(real-only steps",
        "`teacher_hard`",
        "min_confidence 0.2",
        "Synthetic loss weight: 0.5",
        f"val accuracy {report['protocol']['teacher']['val_accuracy']:.4f}",
        "`lenet`",
        "seeds [0, 1]",
        "augmentation.synthetic_labels=teacher_hard augmentation.min_confidence=0.2",
        "| real+smote |",
    ):
        assert text in markdown, text
    flat = flat_augmentation(report)
    assert flat["augmentation/real_fill/scarce_recall"] == arms["real+fill"]["scarce_recall"]["mean"]
    assert flat["augmentation/synthetic_kept_share"] == report["labels"]["kept_share"]
