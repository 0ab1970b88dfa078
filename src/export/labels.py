"""Which class each exported sample is generated for."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor

from src.utils.errors import UserError

LabelPlan = str | Sequence[int | str]


def plan_labels(plan: LabelPlan, n: int, class_names: Sequence[str], train_labels: Tensor | None) -> Tensor:
    """Labels for ``n`` samples of a conditional model.

    * ``balanced``: ``n / K`` per class (the first ``n mod K`` classes get one more);
    * ``proportional``: the class frequencies of the training split (largest remainders);
    * a list of class indices or names: balanced among those classes only.
    """
    num_classes = len(class_names)
    if isinstance(plan, str):
        if plan == "balanced":
            return _spread(n, torch.arange(num_classes), torch.ones(num_classes))
        if plan == "proportional":
            if train_labels is None:
                raise UserError("labels=proportional needs the training split's labels.")
            counts = torch.bincount(train_labels.cpu(), minlength=num_classes).double()
            return _spread(n, torch.arange(num_classes), counts)
        raise UserError(
            f"labels={plan} is not a label plan: use balanced, proportional or a list of classes, e.g. labels=[0,3]."
        )
    classes = torch.tensor([_class_index(item, class_names) for item in plan], dtype=torch.long)
    if len(classes) == 0:
        raise UserError("labels=[] names no class: list at least one class index or name.")
    return _spread(n, classes, torch.ones(len(classes)))


def _class_index(item: int | str, class_names: Sequence[str]) -> int:
    if isinstance(item, int) and 0 <= item < len(class_names):
        return item
    if isinstance(item, str) and item in class_names:
        return list(class_names).index(item)
    raise UserError(
        f"labels: {item!r} is not a class of this model: use indices 0..{len(class_names) - 1} or names {list(class_names)}."
    )


def _spread(n: int, classes: Tensor, weights: Tensor) -> Tensor:
    """``n`` labels over ``classes`` in proportion to ``weights`` (Hamilton's largest remainders)."""
    share = weights / weights.sum() * n
    counts = share.floor().long()
    remainder = n - int(counts.sum())
    if remainder:
        counts[torch.argsort(share - counts, descending=True, stable=True)[:remainder]] += 1
    return torch.repeat_interleave(classes, counts)


def class_folders(class_names: Sequence[str]) -> list[str]:
    """Folder names: a zero-padded index then the sanitised name, so that torchvision's
    ``ImageFolder`` (which numbers classes by sorted folder name) gives back the same labels."""
    width = max(2, len(str(len(class_names) - 1)))
    folders = []
    for index, name in enumerate(class_names):
        safe = re.sub(r"[^A-Za-z0-9]+", "_", str(name)).strip("_")[:60] or "class"
        folders.append(f"{index:0{width}d}_{safe}")
    return folders
