"""The augmentation report's training loop: batches drawn from separate pools in fixed counts.

Each arm of the report (:mod:`src.metrics.augmentation`) is a list of :class:`Pool`: the real
images, and for arms with synthetic images a second pool. Every batch takes a fixed number of
images from each pool (``real_share`` of the batch from the real one, the rest from the synthetic
one), each pool read in a fresh random order pass after pass, so every real image is seen equally
often whatever the synthetic pool's size. Targets are class probabilities (one-hot for hard labels,
a teacher's probabilities for soft ones); the loss is ``mean_i w_i * cross_entropy_i`` with ``w_i``
the pool's weight (``synthetic_weight``) times the class weight of the example's target (the
expected class weight for soft targets). The network and the per-step recipe (random shifts,
AdamW, one-cycle schedule) are those of :func:`src.metrics.classifier_training.fit_classifier`.

The weights kept are those of the validation check with the best accuracy on the real val split
(every ``check_every`` steps and at the last one); with ``patience`` training stops after that many
checks without a better score.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from src.metrics.classifier_networks import build_network, to_input
from src.metrics.classifier_training import Augment, TrainingRecipe, classifier_accuracy, random_shift


@dataclass(frozen=True)
class Pool:
    """Images of one source: ``x`` uint8 (N, C, H, W), ``targets`` float (N, K) class probabilities."""

    x: Tensor
    targets: Tensor
    weight: float = 1.0  # loss weight of each of its examples

    def __len__(self) -> int:
        return len(self.x)


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    return torch.nn.functional.one_hot(labels.long(), num_classes).float()


def real_per_batch(batch: int, real_share: float) -> int:
    """Real images in each mixed batch: ``round(real_share * batch)``, at least 1 and leaving 1 slot."""
    return min(batch - 1, max(1, round(real_share * batch))) if batch > 1 else 1


def budget_steps(real_steps: int, real_batch: int, n_real: int, per_batch: int, pool_size: int) -> int:
    """Steps that give each image of a pool of ``pool_size`` (``per_batch`` of it in each batch) at least
    the passes the real-only arm gives each real image (``real_steps * real_batch / n_real``), and never
    fewer steps than the real-only arm."""
    passes = real_steps * real_batch / n_real
    return max(real_steps, math.ceil(passes * pool_size / per_batch - 1e-9))


class _Stream:
    """A pool's indices in a fresh random order pass after pass; ``take(k)`` continues across passes."""

    def __init__(self, size: int, generator: torch.Generator) -> None:
        self.size, self.generator = size, generator
        self.order = torch.zeros(0, dtype=torch.long)
        self.position = 0

    def take(self, k: int) -> Tensor:
        parts = []
        while k > 0:
            if self.position == len(self.order):
                self.order, self.position = torch.randperm(self.size, generator=self.generator), 0
            part = self.order[self.position : self.position + k]
            self.position += len(part)
            k -= len(part)
            parts.append(part)
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def mixed_batches(
    sizes: Sequence[int], counts: Sequence[int], steps: int, generator: torch.Generator
) -> Iterator[list[Tensor]]:
    """Per step, the indices drawn from each pool: ``counts[p]`` of pool ``p`` (its own pass order)."""
    streams = [_Stream(size, generator) for size in sizes]
    for _ in range(steps):
        yield [stream.take(count) for stream, count in zip(streams, counts)]


def weighted_loss(logits: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """``mean_i weights_i * cross_entropy(logits_i, targets_i)`` with probability targets."""
    per_example = -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1)
    return (weights * per_example).mean()


def fit_arm(
    pools: Sequence[Pool],
    counts: Sequence[int],
    steps: int,
    arch: str,
    num_classes: int,
    recipe: TrainingRecipe,
    device: torch.device,
    val: tuple[Tensor, Tensor],
    check_every: int,
    patience: int | None = None,
    class_weights: Tensor | None = None,
    augment: Augment | None = None,
    on_batch: Callable[[list[Tensor]], None] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Trains the domain network for ``steps`` steps on batches of ``counts[p]`` images of each pool.

    Returns the network with the weights of the best val check and the record of the run:
    ``best_step`` (steps done when those weights were kept), ``best_val_accuracy``, ``steps_run``,
    ``stopped_early``, ``checks``. Uses its own random streams (the caller's RNG state is kept).
    ``on_batch`` sees each step's indices per pool (tests count the real share with it).
    """
    channels, size = int(pools[0].x.shape[1]), int(pools[0].x.shape[-1])
    shift = max(1, round(recipe.max_shift * size / 28)) if recipe.max_shift else 0
    cuda = [device.index or 0] if device.type == "cuda" else []
    weights_of = class_weights.float() if class_weights is not None else None
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(recipe.seed)
        generator = torch.Generator().manual_seed(recipe.seed)
        network = build_network(arch, channels, size, num_classes).to(device)
        optimizer = torch.optim.AdamW(network.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=steps)
        best: tuple[float, int, dict[str, Tensor]] | None = None
        checks, since_best, step = 0, 0, 0
        network.train()
        for step, picks in enumerate(mixed_batches([len(p) for p in pools], counts, steps, generator), 1):
            if on_batch is not None:
                on_batch(picks)
            images = torch.cat([pool.x[idx] for pool, idx in zip(pools, picks)]).cpu()
            targets = torch.cat([pool.targets[idx] for pool, idx in zip(pools, picks)]).cpu()
            weights = torch.cat([torch.full((len(idx),), pool.weight) for pool, idx in zip(pools, picks)])
            if weights_of is not None:
                weights = weights * (targets @ weights_of)
            images = random_shift(images, shift, generator)
            if augment is not None:
                images = augment(images, generator)
            _, logits = network(to_input(images.to(device)))
            loss = weighted_loss(logits, targets.to(device), weights.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % check_every and step != steps:
                continue
            network.eval()
            score = classifier_accuracy(network, *val, device, recipe.seed)
            network.train()
            checks += 1
            if best is None or score > best[0]:
                best, since_best = (score, step, copy.deepcopy(network.state_dict())), 0
            else:
                since_best += 1
                if patience is not None and since_best >= patience:
                    break
        assert best is not None  # the last step is always checked
        network.load_state_dict(best[2])
        network.eval()
    return network, {
        "best_step": best[1],
        "best_val_accuracy": best[0],
        "steps_run": step,
        "stopped_early": step < steps,
        "checks": checks,
    }


@torch.no_grad()
def class_probabilities(network: nn.Module, x: Tensor, device: torch.device) -> Tensor:
    """Softmax outputs (CPU, float) of ``network`` for ``uint8`` images ``x``."""
    out = [torch.softmax(network(to_input(xb.to(device)))[1], dim=1).cpu() for xb in x.cpu().split(1000)]
    return torch.cat(out) if out else torch.zeros(0)
