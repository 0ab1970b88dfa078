"""Membership-inference audit (src.metrics.membership, src.audit) and the dataset card of exports."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import yaml

from src.audit import audit
from src.export.verify import verify_dataset
from src.generate import generate
from src.metrics.membership import json_scores, membership_audit, roc_summary
from src.models import VaeModule
from src.runtime.run import read_metrics_json, run_task


class Splits:
    """The part of a data module the audit reads: train (members) and test (non-members) images."""

    kind, name = "image", "fixture"

    def __init__(self, train: torch.Tensor, test: torch.Tensor) -> None:
        self.data = {
            "train": (train, torch.zeros(len(train), dtype=torch.long)),
            "test": (test, torch.zeros(len(test), dtype=torch.long)),
        }

    def split(self, name: str):
        return self.data[name]

    def fingerprint(self, split: str) -> str:
        return "fixture"


def _mnist(n: int, offset: int) -> torch.Tensor:
    from src.data.mnist import _bundled_mnist

    return _bundled_mnist()[0][offset : offset + n]


def _fit_vae(images: torch.Tensor, steps: int = 400) -> VaeModule:
    """A small VAE fitted to ``images`` alone until it memorises them."""
    torch.manual_seed(0)
    model = VaeModule(
        image_size=28,
        channels=1,
        latent_dim=8,
        width=16,
        norm="none",
        binarize=False,
        optimizer=torch.optim.Adam,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = model.to_model_range(images)
    for _ in range(steps):
        log_px, kl = model.elbo_terms(x, None, None)
        loss = (-log_px + kl).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _white_box(model: VaeModule):
    return "elbo", model.membership_score, model.to_model_range


def test_roc_summary_matches_the_closed_form() -> None:
    generator = torch.Generator().manual_seed(0)
    members, nonmembers = torch.randn(300, generator=generator) + 0.5, torch.randn(400, generator=generator)
    # AUC = P(member score > non-member score) (Mann-Whitney), counted over all pairs.
    pairs = members[:, None] - nonmembers[None, :]
    expected = ((pairs > 0).double() + 0.5 * (pairs == 0).double()).mean().item()
    summary = roc_summary(members, nonmembers)
    assert summary["auc"] == pytest.approx(expected, abs=1e-6)  # torchmetrics sums in float32
    # TPR at FPR 1 %: members above the 4th-highest of 400 non-member scores (4 false positives allowed).
    threshold = nonmembers.sort(descending=True).values[4]
    assert summary["tpr_at_fpr_1pct"] == pytest.approx((members > threshold).double().mean().item(), abs=1e-9)
    # 400 non-members cannot measure FPR 0.1 % (one false positive is already 0.25 %).
    assert math.isnan(summary["tpr_at_fpr_0.1pct"])
    # 1000 non-members measure both levels. Scores far outside [0, 1] (which torchmetrics would
    # squash with a sigmoid into ties) keep their order.
    separated = torch.arange(1000.0)
    perfect = roc_summary(separated + 1000, separated)
    assert perfect == {"auc": pytest.approx(1.0), "tpr_at_fpr_1pct": 1.0, "tpr_at_fpr_0.1pct": 1.0}


def test_a_false_positive_rate_too_few_non_members_can_measure_is_null_with_its_reason(tmp_path) -> None:
    from src.export.audit import write_audit_report

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (120, 1, 8, 8), dtype=torch.uint8, generator=g)
    scores, protocol = membership_audit(Splits(images[:60], images[60:]), n=50, synthetic=images[:10])
    assert scores["audit/closest_synthetic/auc"] > 0.5  # members 0-9 are in the synthetic set
    assert math.isnan(scores["audit/closest_synthetic/tpr_at_fpr_1pct"])
    assert math.isnan(scores["audit/closest_synthetic/tpr_at_fpr_0.1pct"])
    assert protocol["min_measurable_fpr"] == pytest.approx(1 / 50)
    assert "needs at least 100 non-members" in protocol["unmeasured"]["tpr_at_fpr_1pct"]
    assert "1/50 = 0.02" in protocol["unmeasured"]["tpr_at_fpr_0.1pct"]
    privacy = {"mechanism": "none"}
    json_path, md_path = write_audit_report(tmp_path / "export", scores, protocol, privacy)
    report = json.loads(json_path.read_text())
    assert report["scores"]["audit/closest_synthetic/tpr_at_fpr_1pct"] is None
    assert report["privacy"] == privacy and report["protocol"]["unmeasured"]
    text = md_path.read_text()
    assert "| n/a | n/a |" in text and "needs at least 1000 non-members" in text
    assert "without differential privacy" in text


def test_audit_sees_an_overfit_model_and_not_a_model_that_never_saw_the_members() -> None:
    seen, unseen, elsewhere = _mnist(32, 0), _mnist(32, 100), _mnist(200, 1000)
    overfit = _fit_vae(seen)
    scores, protocol = membership_audit(
        Splits(seen, unseen), n=32, white_box=_white_box(overfit), synthetic=seen
    )
    assert protocol["n_members"] == protocol["n_nonmembers"] == 32
    assert scores["audit/elbo/auc"] > 0.8
    # A "generator" that copies its training images: the closest synthetic image is the member itself.
    # (32 non-members cannot measure a TPR at FPR 1 %: it is NaN, see the test below.)
    assert scores["audit/closest_synthetic/auc"] == 1.0
    assert math.isnan(scores["audit/closest_synthetic/tpr_at_fpr_1pct"])
    # The same model against 100 + 100 images it never saw: the attack can only guess.
    control, _ = membership_audit(
        Splits(elsewhere[:100], elsewhere[100:]), n=100, white_box=_white_box(overfit), synthetic=seen
    )
    assert abs(control["audit/elbo/auc"] - 0.5) < 0.12
    assert abs(control["audit/closest_synthetic/auc"] - 0.5) < 0.12


def test_audit_cli_on_a_checkpoint_and_on_an_export(make_cfg, trained_checkpoints, tmp_path) -> None:
    ckpt = trained_checkpoints["cvae"]
    cfg = make_cfg("audit", [f"ckpt_path={ckpt}", "hardware=cpu", "n=50", "n_synthetic=100"])
    assert run_task(audit, cfg) is None
    metrics = read_metrics_json(cfg.paths.output_dir)
    for attack in ("elbo", "closest_synthetic"):
        assert 0.0 <= metrics[f"audit/{attack}/auc"] <= 1.0
        # 50 non-members cannot measure FPR 1 % or 0.1 %: null, with the reason in the protocol.
        for stat in ("tpr_at_fpr_1pct", "tpr_at_fpr_0.1pct"):
            assert metrics[f"audit/{attack}/{stat}"] is None
            assert stat in metrics["protocol"]["audit"]["unmeasured"]
    assert metrics["protocol"]["audit"]["n_members"] == metrics["protocol"]["audit"]["n_nonmembers"] == 50
    assert metrics["privacy"]["mechanism"] == "none"  # the audited model's privacy block

    out = tmp_path / "export"
    generate(
        make_cfg(
            "generate",
            [f"ckpt_path={ckpt}", f"out_dir={out}", "hardware=cpu", "n=40", "score=false", "audit=true"],
        )
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["audit"]["protocol"]["attacks"]) == {"elbo", "closest_synthetic"}
    cfg = make_cfg("audit", [f"export_dir={out}", "hardware=cpu", "n=50"])
    result = audit(cfg)
    assert set(result.protocol["audit"]["attacks"]) == {"closest_synthetic"}
    report = json.loads((tmp_path / "export.audit.json").read_text())
    assert report["scores"] == json_scores(result.metrics) and (tmp_path / "export.audit.md").is_file()
    assert report["privacy"] == manifest["privacy"] == result.extra["privacy"]
    assert verify_dataset(out) == []  # the report sits beside the export, which stays intact


def test_audit_needs_exactly_one_target(make_cfg) -> None:
    from src.utils.errors import UserError

    with pytest.raises(UserError, match="one of ckpt_path"):
        audit(make_cfg("audit", ["hardware=cpu"]))


def test_every_export_has_a_dataset_card(make_cfg, trained_checkpoints, tmp_path) -> None:
    out = tmp_path / "card"
    generate(
        make_cfg(
            "generate",
            [
                f"ckpt_path={trained_checkpoints['cvae']}",
                f"out_dir={out}",
                "hardware=cpu",
                "n=30",
                "audit=true",
            ],
        )
    )
    text = (out / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == "unknown" and meta["size_categories"] == ["n<1K"]
    assert meta["task_categories"] == ["image-classification"] and meta["source_datasets"] == ["mnist"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoint"]["sha256"] in text
    assert "No formal privacy guarantee" in text and manifest["privacy"]["mechanism"] == "none"
    assert "| elbo (" in text and "| fid |" in text  # audit and scores with their protocol
    sums = (out / "SHA256SUMS").read_text()
    assert "  README.md\n" in sums and verify_dataset(out) == []
    # Hugging Face imagefolder layout unchanged: metadata.csv next to the images.
    rows = list(csv.DictReader((out / "metadata.csv").open()))
    assert list(rows[0]) == ["file_name", "label", "source"] and all(
        (out / r["file_name"]).is_file() for r in rows
    )
    (out / "README.md").write_text(text.replace("genlab", "edited"))
    assert verify_dataset(out) == ["altered: README.md"]


def test_card_states_the_privacy_guarantee() -> None:
    from src.export.card import dataset_card

    record = {
        "mechanism": "DP-SGD (Opacus)",
        "private_part": "the whole model",
        "epsilon": 3.0,
        "delta": 2.5e-5,
        "noise_multiplier": 0.9,
        "max_grad_norm": 1.0,
        "sample_rate": 0.03,
        "steps": 310,
        "n_train": 4000,
        "accountant": "rdp",
        "library": "opacus",
        "version": "1.6.0",
    }
    text = dataset_card(
        {"n": 20000, "privacy": record, "label_source": "conditional", "data": {"name": "mnist"}}
    )
    meta = yaml.safe_load(text.split("---\n")[1])
    assert "differential-privacy" in meta["tags"] and meta["size_categories"] == ["10K<n<100K"]
    assert "(epsilon = 3.000, delta = 2.5e-05)-differential privacy" in text
    assert "not covered" in text


def test_audit_as_a_metrics_option_at_test_time(make_cfg) -> None:
    from src.train import train
    from tests.conftest import FAST_VAE

    cfg = make_cfg(
        "train",
        [
            *FAST_VAE,
            "data.source=files",
            "metrics.audit=true",
            "metrics.audit_n=40",
            "metrics.audit_n_synthetic=64",
        ],
    )
    result = train(cfg)
    assert 0.0 <= result.metrics["audit/elbo/auc"] <= 1.0
    assert math.isnan(result.metrics["audit/closest_synthetic/tpr_at_fpr_1pct"])  # 40 non-members
    assert result.protocol["audit"]["n_members"] == result.protocol["audit"]["n_nonmembers"] == 40
