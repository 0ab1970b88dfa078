"""The augmentation report's baselines for a skewed real split: what a practitioner tries first.

* ``real+oversample``: every class's real images repeated (whole copies, then a seeded draw of the
  rest) up to the largest class's count;
* ``real+class_weights``: the real split as it is, each example's loss weighted by the inverse
  frequency of its class, ``n / (K * n_c)`` (scikit-learn's ``"balanced"`` weights: a balanced split
  gets 1 everywhere);
* ``real+smote``: imbalanced-learn's SMOTE (Chawla et al. 2002) on the flattened pixels: every class
  brought to the largest class's count with images interpolated between a real image and one of its
  ``k`` nearest real neighbours of the same class (``k = min(5, smallest class - 1)``).
"""

from __future__ import annotations

import torch
from torch import Tensor

SMOTE_NEIGHBOURS = 5  # imbalanced-learn's default k


def oversample(x: Tensor, y: Tensor, num_classes: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The real images with each class's repeated up to the largest class's count."""
    counts = torch.bincount(y, minlength=num_classes)
    target = int(counts.max())
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(num_classes):
        members = (y == c).nonzero().flatten()
        if len(members) == 0:
            continue
        copies, rest = divmod(target, len(members))
        extra = members[torch.randperm(len(members), generator=generator)[:rest]]
        picks.append(torch.cat([members.repeat(copies), extra]))
    pick = torch.cat(picks)
    return x[pick], y[pick]


def class_weights(y: Tensor, num_classes: int) -> Tensor:
    """Inverse-frequency class weights ``n / (K * n_c)`` over the classes present (0 for absent ones)."""
    counts = torch.bincount(y, minlength=num_classes).double()
    present = int((counts > 0).sum())
    weights = torch.zeros(num_classes, dtype=torch.float64)
    weights[counts > 0] = len(y) / (present * counts[counts > 0])
    return weights.float()


def smote_neighbours(y: Tensor, num_classes: int) -> int:
    """SMOTE's ``k``: 5, or fewer when the smallest class present has 5 images or less (0: impossible)."""
    counts = torch.bincount(y, minlength=num_classes)
    return min(SMOTE_NEIGHBOURS, int(counts[counts > 0].min()) - 1)


def smote(x: Tensor, y: Tensor, num_classes: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """imbalanced-learn's SMOTE on flattened pixels: the real images first, then the interpolated ones
    (rounded back to uint8), every class at the largest class's count."""
    from imblearn.over_sampling import SMOTE

    k = smote_neighbours(y, num_classes)
    if k < 1:
        raise ValueError("SMOTE needs at least 2 images in every class")
    flat = x.reshape(len(x), -1).numpy().astype("float32")
    x_res, y_res = SMOTE(k_neighbors=k, random_state=seed).fit_resample(flat, y.numpy())
    images = torch.from_numpy(x_res).round().clamp(0, 255).to(torch.uint8).reshape(-1, *x.shape[1:])
    return images, torch.from_numpy(y_res).long()
