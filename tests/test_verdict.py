"""The verdict: constructed sample sets of each bad kind fail their aspect, real held-out images pass.

Real MNIST (the bundled subset) with its train split cut to 3,000 images, so the
1,000 left out are real images that neither the training split nor the val/test splits hold: the
control that must raise no warning. Every set is scored against the val split; the reference is
as many test images.
"""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from src.metrics import ScoreOptions, Scorer, TrainingRecipe, load_extractor, score_samples
from src.metrics.memorization import TrainReference
from src.metrics.verdict import (
    RULES,
    class_tv,
    copy_share,
    judge,
    markdown_table,
    outside_share,
    sharpness,
    summary_lines,
    verdict_warnings,
)
from src.runtime.summary import console_summary

N = 400


@pytest.fixture(scope="module")
def mnist_3000(tmp_path_factory: pytest.TempPathFactory):
    """(data module with a 3,000-image train split, its extractor, the 1,000 left-out train images and labels)."""
    from src.data import MnistDataModule

    root = tmp_path_factory.mktemp("bundled")
    full = MnistDataModule(data_dir=str(root), source="bundled")
    cut = MnistDataModule(data_dir=str(root), source="bundled", subset={"total": 3000})
    for datamodule in (full, cut):
        datamodule.prepare_data()
        datamodule.setup()
    kept = {bytes(x.numpy().tobytes()) for x in cut.split("train")[0]}
    x, y = full.split("train")
    left_out = torch.tensor([bytes(image.numpy().tobytes()) not in kept for image in x])
    extractor = load_extractor(cut, root / "cache", recipe=TrainingRecipe(epochs=3))
    return cut, extractor, x[left_out], y[left_out]


def _constructed(
    kind: str, held_out: torch.Tensor, labels: torch.Tensor, train: torch.Tensor
) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if kind == "real held-out":
        return held_out[:N]
    if kind == "noise":
        return torch.randint(0, 256, (N, 1, 28, 28), dtype=torch.uint8, generator=g)
    if kind == "one image repeated":
        return held_out[:1].repeat(N, 1, 1, 1)
    if kind == "training copies":
        return train[:N]
    if kind == "blurred":
        return TF.gaussian_blur(held_out[:N].float(), [5, 5], [1.5, 1.5]).round().to(torch.uint8)
    if kind == "one class":
        return held_out[labels == 1][:N]
    raise AssertionError(kind)


# The aspect each kind must fail (and the score that must decide it); the control fails none.
EXPECTED = {
    "real held-out": {},
    "noise": {"fidelity": "outside_share"},
    "one image repeated": {"diversity": "coverage"},
    "training copies": {"novelty": "copy_share"},
    "blurred": {"fidelity": "sharpness"},
    "one class": {"class_balance": "class_tv"},
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_each_bad_kind_fails_its_aspect_and_real_held_out_images_pass(mnist_3000, kind: str) -> None:
    datamodule, extractor, held_out, labels = mnist_3000
    images = _constructed(kind, held_out, labels, datamodule.split("train")[0])
    scores, protocol = score_samples(images, datamodule, "val", extractor=extractor, options=ScoreOptions())
    verdict = protocol["verdict"]
    assert protocol["reference"]["split"] == "test" and protocol["reference"]["n"] == len(images)
    assert protocol["reference/real/fid"] > 0 and "reference/real/copy_share" in protocol
    failed = {aspect for aspect, entry in verdict.items() if entry["pass"] is False}
    if not EXPECTED[kind]:
        assert failed == set() and protocol["warnings"] == [], protocol["warnings"]
        assert all(entry["pass"] is True for entry in verdict.values()), verdict
        return
    for aspect, deciding in EXPECTED[kind].items():
        assert aspect in failed, (kind, verdict)
        check = next(c for c in verdict[aspect]["checks"] if c["score"] == deciding)
        assert not check["passed"] and check["value"] == scores[deciding]
        assert any(
            w.startswith(f"{aspect.replace('_', ' ')} fails: {deciding}") for w in protocol["warnings"]
        )


def test_the_reference_is_what_held_out_real_images_score(mnist_3000) -> None:
    datamodule, extractor, _, _ = mnist_3000
    scorer = Scorer(extractor, ScoreOptions())
    test_images = datamodule.split("test")[0]
    _, protocol = score_samples(test_images[:50], datamodule, "val", scorer=scorer)
    # Held-out images drawn by the evaluation seed, scored as samples are: the same numbers.
    index = torch.randperm(len(test_images), generator=torch.Generator().manual_seed(0))[:50].sort().values
    direct, _ = score_samples(test_images[index], datamodule, "val", scorer=scorer)
    for name, value in direct.items():
        reference = protocol[f"reference/real/{name}"]
        assert reference is None or reference == pytest.approx(value, nan_ok=True), name


def test_statistics_match_their_closed_forms() -> None:
    # Total variation: half the L1 distance between histograms.
    assert class_tv(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]), 3) == pytest.approx(0.25)
    assert class_tv(torch.tensor([2, 2]), torch.tensor([0, 1]), 3) == pytest.approx(1.0)
    # Laplacian variance: 0 on a flat image; a single bright pixel on black.
    assert sharpness(torch.full((2, 1, 8, 8), 7, dtype=torch.uint8)) == 0.0
    dot = torch.zeros(1, 1, 5, 5)
    dot[0, 0, 2, 2] = 1.0
    laplacian = torch.tensor([0, 1, 0, 1, -4, 1, 0, 1, 0], dtype=torch.float)  # the 3x3 valid output
    assert sharpness(dot) == pytest.approx(float(laplacian.var()))
    # Copies sit at distance 0; points a third of the way or more to their neighbour do not count.
    train = TrainReference.from_features(torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 6.0]]))
    assert copy_share(train.features, train) == 1.0
    assert copy_share(torch.tensor([[1.5, 0.0], [0.9, 0.0]]), train) == 0.5
    # Outside: farther than the threshold from every real point.
    real = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    assert outside_share(torch.tensor([[0.5, 0.0], [5.0, 0.0]]), real, threshold=1.0) == 0.5


def test_each_rule_fails_only_beyond_its_margin() -> None:
    for rule in RULES:
        reference = 0.5 if rule.kind == "above" else 4.0
        limit = rule.limit(reference)
        worse, better = (limit + 1e-6, limit - 1e-6) if rule.kind == "above" else (limit - 1e-6, limit + 1e-6)
        verdict = judge({rule.score: worse}, {rule.score: reference})[rule.aspect]
        assert verdict["pass"] is False and verdict["checks"][0]["limit"] == pytest.approx(limit)
        assert judge({rule.score: better}, {rule.score: reference})[rule.aspect]["pass"] is True
    # Nothing to compare with: not judged, rather than passed.
    assert judge({"fid": 3.0}, {})["fidelity"] == {"pass": None, "checks": []}


def test_console_and_markdown_tables_show_each_score_beside_its_reference() -> None:
    scores = {"fid": 120.0, "detection_auc": 0.99, "coverage": 0.9}
    reference = {"fid": 8.0, "detection_auc": 0.52, "coverage": 0.95}
    protocol = {
        "split": "test",
        "n_fake": 500,
        "n_real": 500,
        "reference": {"split": "val", "n": 500},
        **{f"reference/real/{k}": v for k, v in reference.items()},
        "verdict": judge(scores, reference),
    }
    lines = console_summary({f"test/{k}": v for k, v in scores.items()}, {"test": protocol}, ["audit: done"])
    assert lines[0] == "audit: done" and "500 held-out val images" in lines[1]
    assert any(line.split()[:3] == ["fid", "120", "8"] for line in lines)
    assert (
        lines[-1].strip()
        == "verdict: fidelity FAIL (detection_auc); diversity pass; novelty n/a; class balance n/a"
    )
    assert summary_lines(scores, protocol)[-1] == lines[-1]
    table = "\n".join(markdown_table(scores, protocol))
    assert "| detection_auc | 0.99 | 0.52 |" in table and "| fidelity | **fail** |" in table


def test_the_dataset_card_shows_scores_beside_their_reference_and_the_warnings() -> None:
    from src.export.card import dataset_card

    scores = {"fid": 120.0, "copy_share": 0.9}
    reference = {"fid": 8.0, "copy_share": 0.0}
    verdict = judge(scores, reference)
    protocol = {
        "split": "test",
        "reference": {"split": "val", "n": 500},
        **{f"reference/real/{k}": v for k, v in reference.items()},
        "verdict": verdict,
        "warnings": verdict_warnings(verdict),
    }
    card = dataset_card({"n": 500, "scores": scores, "score_protocol": protocol})
    assert "| copy_share | 0.9 | 0 |" in card and "| novelty | **fail** |" in card
    assert "- novelty fails: copy_share 0.9 against 0 for real held-out images" in card
