"""Scarce and skewed training splits: keep a reproducible part of the train split.

``data.subset`` (every data module) takes one of:

* ``per_class=N``: ``N`` images of every class;
* ``per_class={3:20,5:20,8:20}``: the listed classes (indices or names) cut to those counts, the
  others untouched (a skewed split);
* ``total=N``: ``N`` images in all, spread over the classes in proportion to their sizes
  (largest remainders), so the class balance stays as it was.

The images of each class are drawn by a permutation seeded from ``(data.split_seed, class)``: the
same seed keeps the same images, and a class's draw does not depend on the counts of the others.
Validation and test splits are never cut. Counts above what a class has, a class left empty, or a
subset of unlabelled data stop with an ``Error:`` line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from src.utils.errors import UserError


@dataclass(frozen=True)
class SubsetSpec:
    """What ``data.subset`` asks for (``None`` fields are unset)."""

    per_class: int | dict[int | str, int] | None = None
    total: int | None = None

    @classmethod
    def from_config(cls, value: Any) -> SubsetSpec | None:
        """``None`` / ``{per_class: null, total: null}`` -> ``None``; a mapping -> a checked spec."""
        if value is None:
            return None
        if isinstance(value, SubsetSpec):
            spec = value
        elif isinstance(value, Mapping):
            unknown = set(value) - {"per_class", "total"}
            if unknown:
                raise UserError(
                    f"data.subset.{sorted(map(str, unknown))[0]} is not an option: use data.subset.per_class or data.subset.total."
                )
            per_class = value.get("per_class")
            if isinstance(per_class, Mapping):
                per_class = {_key(k): v for k, v in per_class.items()}
            spec = cls(per_class=per_class, total=value.get("total"))
        else:
            raise UserError(
                f"data.subset={value!r} is not a subset: use data.subset.per_class=N, "
                "'data.subset.per_class={3:20,5:20}' or data.subset.total=N."
            )
        spec.check()
        return None if spec.per_class is None and spec.total is None else spec

    def check(self) -> None:
        if self.per_class is not None and self.total is not None:
            raise UserError(
                "data.subset.per_class and data.subset.total are both set: keep one of them (set the other to null)."
            )
        if self.total is not None and (not _is_int(self.total) or self.total < 1):
            raise UserError(f"data.subset.total={self.total!r} is invalid: use a positive number of images.")
        if isinstance(self.per_class, dict):
            if not self.per_class:
                raise UserError("data.subset.per_class={} names no class: list classes, e.g. '{3:20,5:20}'.")
            for key, count in self.per_class.items():
                if not _is_int(count) or count < 1:
                    raise UserError(
                        f"data.subset.per_class: class {key} -> {count!r} would leave class {key} empty: keep at "
                        "least 1 image, or leave the class out of the mapping to keep it whole."
                    )
        elif self.per_class is not None and (not _is_int(self.per_class) or self.per_class < 1):
            raise UserError(
                f"data.subset.per_class={self.per_class!r} would leave every class empty: use a positive count."
            )

    def describe(self) -> dict[str, Any]:
        per_class = self.per_class
        if isinstance(per_class, dict):
            per_class = {str(k): v for k, v in per_class.items()}
        return {"per_class": per_class, "total": self.total}

    def counts(self, labels: Tensor, num_classes: int, class_names: Sequence[str]) -> list[int]:
        """Images to keep per class, given the train split's labels; raises on impossible requests."""
        have = torch.bincount(labels.cpu(), minlength=num_classes).tolist()
        names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        if self.total is not None:
            if self.total > sum(have):
                raise UserError(
                    f"data.subset.total={self.total} is more than the {sum(have)} images of the train split: use at most {sum(have)}."
                )
            want = _largest_remainders(self.total, have)
            empty = [names[c] for c in range(num_classes) if have[c] and not want[c]]
            if empty:
                raise UserError(
                    f"data.subset.total={self.total} leaves class(es) {', '.join(empty)} empty: use a larger total "
                    "or data.subset.per_class."
                )
            return want
        if isinstance(self.per_class, dict):
            want = list(have)
            for key, count in self.per_class.items():
                want[_class_index(key, names, num_classes)] = count
        else:
            want = [int(self.per_class)] * num_classes
        for c in range(num_classes):
            if want[c] > have[c]:
                raise UserError(
                    f"data.subset.per_class asks for {want[c]} images of class {names[c]}, but the train split has "
                    f"{have[c]}: use at most {have[c]}."
                )
        return want


def select_subset(labels: Tensor, want: Sequence[int], seed: int) -> Tensor:
    """Indices (ascending) keeping ``want[c]`` images of each class ``c``, drawn by ``(seed, c)``."""
    labels = labels.cpu()
    keep = []
    for c, count in enumerate(want):
        members = (labels == c).nonzero().flatten()
        if count >= len(members):
            keep.append(members)
            continue
        rng = np.random.default_rng([seed % 2**63, c])
        keep.append(members[torch.from_numpy(rng.permutation(len(members))[:count])])
    return torch.cat(keep).sort().values if keep else torch.zeros(0, dtype=torch.long)


def _largest_remainders(total: int, have: Sequence[int]) -> list[int]:
    share = torch.tensor(have, dtype=torch.float64) / max(1, sum(have)) * total
    counts = share.floor().long()
    rest = total - int(counts.sum())
    if rest:
        counts[torch.argsort(share - counts, descending=True, stable=True)[:rest]] += 1
    return counts.tolist()


def _class_index(key: int | str, names: Sequence[str], num_classes: int) -> int:
    if isinstance(key, int) and 0 <= key < num_classes:
        return key
    if isinstance(key, str) and key in names:
        return list(names).index(key)
    raise UserError(
        f"data.subset.per_class: {key!r} is not a class of this data: use indices 0..{num_classes - 1} or names {list(names)}."
    )


def _key(key: Any) -> int | str:
    if isinstance(key, str) and key.lstrip("-").isdigit():
        return int(key)
    return key


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
