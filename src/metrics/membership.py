"""Membership-inference audit: can an attacker tell the training images from unseen ones?

Candidates: ``n`` training images (members) and ``n`` test images (non-members), equal counts,
drawn with ``seed`` (the test split never trained the model). Each attack gives every candidate a
score, higher meaning "more likely a member"; the audit reports the ROC AUC (0.5: the attacker
cannot tell) and the true-positive rate at false-positive rates of 1 % and 0.1 % (Carlini et al.
2022, "Membership inference attacks from first principles": what matters is confident hits at a
low false-positive rate). With ``n`` non-members the smallest non-zero FPR is ``1 / n``: a level
below it cannot be measured (at ``n < 1000`` a "TPR at FPR 0.1 %" would be the TPR at zero false
positives, a stricter and noisier number), so its TPR is NaN in Python and ``null`` in JSON, and the
protocol says why (``unmeasured``) and gives ``min_measurable_fpr``.

Attacks
    * ``elbo`` (white-box, VAEs): the model's per-example evidence lower bound; an overfit VAE
      explains its training images better than new ones.
    * ``discriminator`` (white-box, GANs): the discriminator's score, LOGAN (Hayes et al. 2019);
      an overfit critic calls its training images more real.
    * ``closest_synthetic`` (black-box, on generated data only): minus the pixel-space L2 distance
      of a candidate to its closest synthetic image, GAN-Leaks' full black-box attack (Chen et al.
      2020); a generator that reproduces training images puts them close to its samples.

ROC AUC and ROC come from torchmetrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_roc

from src.data.base import GenerativeDataModule
from src.metrics.memorization import nearest
from src.utils.errors import UserError

FPR_LEVELS = {"1pct": 0.01, "0.1pct": 0.001}
ATTACKS = {
    "elbo": "white-box: per-example ELBO of the VAE (higher = member)",
    "discriminator": "white-box: discriminator score, LOGAN (Hayes et al. 2019)",
    "closest_synthetic": (
        "black-box: minus L2 pixel distance ([0, 1] scale) to the closest synthetic image, "
        "GAN-Leaks full black-box (Chen et al. 2020)"
    ),
}
# (model-range images, labels) -> one score per image, higher = member.
WhiteBox = Callable[[Tensor, Tensor | None], Tensor]


def measurable(level: float, n_nonmembers: int) -> bool:
    """Whether ``n_nonmembers`` can measure a false-positive rate of ``level`` (at least ``1/level``)."""
    return n_nonmembers * level >= 1 - 1e-9


def roc_summary(member_scores: Tensor, nonmember_scores: Tensor) -> dict[str, float]:
    """ROC AUC and TPR at the FPR levels of an attack's scores (torchmetrics); NaN for a level
    that fewer than ``1/level`` non-members cannot measure."""
    preds = torch.cat([member_scores, nonmember_scores]).double().cpu()
    # torchmetrics reads scores outside [0, 1] as logits and squashes them with a sigmoid, which
    # turns every score above ~37 (or ELBOs below ~-745) into one tie: an order-preserving map into
    # [0, 1] keeps the attack's ranking intact.
    low, high = preds.min(), preds.max()
    preds = (preds - low) / (high - low) if high > low else torch.zeros_like(preds)
    target = torch.cat([torch.ones(len(member_scores)), torch.zeros(len(nonmember_scores))]).long()
    out = {"auc": float(binary_auroc(preds, target))}
    fpr, tpr, _ = binary_roc(preds, target)
    for name, level in FPR_LEVELS.items():
        out[f"tpr_at_fpr_{name}"] = (
            float(tpr[fpr <= level + 1e-12].max()) if measurable(level, len(nonmember_scores)) else math.nan
        )
    return out


def unmeasured_levels(n_nonmembers: int) -> dict[str, str]:
    """``{"tpr_at_fpr_<level>": reason}`` for the levels ``n_nonmembers`` cannot measure."""
    return {
        f"tpr_at_fpr_{name}": (
            f"not measured: FPR {level:g} needs at least {math.ceil(1 / level - 1e-9)} non-members; with "
            f"{n_nonmembers} the smallest non-zero FPR is 1/{n_nonmembers} = {1 / max(n_nonmembers, 1):.3g} "
            "(raise n)"
        )
        for name, level in FPR_LEVELS.items()
        if not measurable(level, n_nonmembers)
    }


def json_scores(scores: Mapping[str, float]) -> dict[str, float | None]:
    """The scores with NaN (a level that could not be measured) as ``None``, i.e. JSON ``null``."""
    return {name: value if math.isfinite(value) else None for name, value in scores.items()}


def audit_candidates(
    datamodule: GenerativeDataModule, n: int, seed: int
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``(members, non-members)``: equal numbers of train and test images (and labels), seeded."""
    if datamodule.kind != "image":
        raise UserError(f"the membership audit needs image data; data={datamodule.name} holds points.")
    train, test = datamodule.split("train"), datamodule.split("test")
    count = min(n, len(train[0]), len(test[0]))
    generator = torch.Generator().manual_seed(seed)

    def pick(split: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        idx = torch.randperm(len(split[0]), generator=generator)[:count].to(split[0].device)
        return split[0][idx], split[1][idx]

    return pick(train), pick(test)


def white_box_scores(
    score: WhiteBox,
    images: Tensor,
    labels: Tensor,
    to_model_range: Callable[[Tensor], Tensor],
    batch: int = 500,
) -> Tensor:
    out = [
        score(to_model_range(x), y).float().cpu() for x, y in zip(images.split(batch), labels.split(batch))
    ]
    return torch.cat(out)


def closest_synthetic_scores(candidates: Tensor, synthetic: Tensor) -> Tensor:
    """Minus the L2 distance of each uint8 candidate to its closest uint8 synthetic image, in [0, 1] pixels."""
    if candidates.shape[1:] != synthetic.shape[1:]:
        raise UserError(
            f"the synthetic images are {tuple(synthetic.shape[1:])}, the real ones {tuple(candidates.shape[1:])}: "
            "audit an export against the data it was trained on."
        )
    a = candidates.flatten(1).float().cpu() / 255.0
    b = synthetic.flatten(1).float().cpu() / 255.0
    return -nearest(a, b)[0]


def membership_audit(
    datamodule: GenerativeDataModule,
    n: int = 500,
    seed: int = 0,
    white_box: tuple[str, WhiteBox, Callable[[Tensor], Tensor]] | None = None,
    synthetic: Tensor | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Runs the attacks that apply; returns ``({"audit/<attack>/<stat>": value}, protocol)``.

    Args:
        white_box: ``(attack name, score function, uint8 -> model range)`` of a trained model.
        synthetic: uint8 generated images for the black-box attack.
    """
    members, nonmembers = audit_candidates(datamodule, n, seed)
    scores: dict[str, float] = {}
    attacks: dict[str, str] = {}
    if white_box is not None:
        name, fn, to_range = white_box
        summary = roc_summary(
            white_box_scores(fn, *members, to_range), white_box_scores(fn, *nonmembers, to_range)
        )
        scores.update({f"audit/{name}/{k}": v for k, v in summary.items()})
        attacks[name] = ATTACKS[name]
    if synthetic is not None:
        summary = roc_summary(
            closest_synthetic_scores(members[0], synthetic),
            closest_synthetic_scores(nonmembers[0], synthetic),
        )
        scores.update({f"audit/closest_synthetic/{k}": v for k, v in summary.items()})
        attacks["closest_synthetic"] = ATTACKS["closest_synthetic"]
    protocol = {
        "members": "train split",
        "nonmembers": "test split",
        "n_members": len(members[0]),
        "n_nonmembers": len(nonmembers[0]),
        "n_synthetic": None if synthetic is None else len(synthetic),
        "seed": seed,
        "dataset": datamodule.name,
        "train_fingerprint": datamodule.fingerprint("train"),
        "attacks": attacks,
        "fpr_levels": FPR_LEVELS,
        "min_measurable_fpr": 1 / max(len(nonmembers[0]), 1),
        "unmeasured": unmeasured_levels(len(nonmembers[0])),
        "reference": "Carlini et al. 2022 (TPR at low FPR); Hayes et al. 2019 (LOGAN); Chen et al. 2020 (GAN-Leaks)",
    }
    return scores, protocol


def model_white_box(model: Any) -> tuple[str, WhiteBox, Callable[[Tensor], Tensor]] | None:
    """The white-box attack a generative model offers (``membership_attack``), or ``None``."""
    name = getattr(model, "membership_attack", None)
    if name is None:
        return None
    return name, model.membership_score, model.to_model_range
