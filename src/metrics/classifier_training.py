"""Training and testing the domain classifier: one recipe for the feature extractor and the
Classification Accuracy Score, with its own random streams (the caller's RNG state is untouched).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.metrics.classifier_networks import build_network, to_input

# Bump when the networks, the preprocessing or the training loop change: old cache entries then
# stop matching, and scores computed with them stop being comparable (their hash differs anyway).
RECIPE_VERSION = 1

Task = Literal["classes", "rotation"]
# (uint8 batch (B, C, H, W), generator) -> augmented uint8 batch: extra training-time augmentation.
Augment = Callable[[Tensor, torch.Generator], Tensor]


@dataclass(frozen=True)
class TrainingRecipe:
    """How the classifier is trained; every field is part of the cache key."""

    epochs: int = 10
    seed: int = 0
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    max_shift: int = 2  # random translations of up to this many pixels (per 28 px)
    version: int = RECIPE_VERSION


def fit_classifier(
    x: Tensor,
    y: Tensor,
    arch: str,
    num_outputs: int,
    recipe: TrainingRecipe,
    device: torch.device,
    task: Task = "classes",
    augment: Augment | None = None,
    val: tuple[Tensor, Tensor] | None = None,
    steps: int | None = None,
) -> nn.Module:
    """Trains the domain network on ``uint8`` images ``x`` with labels ``y`` (or on their rotations).

    The same network and recipe serve the feature extractor and the Classification Accuracy
    Score of exported datasets. Training uses its own random streams: the caller's RNG state is
    left as it was. ``augment`` transforms each (shifted) batch; with ``val`` the weights of the
    epoch with the best validation accuracy are kept (model selection never sees a test split);
    ``steps`` replaces ``recipe.epochs`` passes by a number of optimizer steps (then validated
    ``recipe.epochs`` times, evenly spaced).
    """
    channels, size = int(x.shape[1]), int(x.shape[-1])
    shift = max(1, round(recipe.max_shift * size / 28)) if recipe.max_shift else 0
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(recipe.seed)
        generator = torch.Generator().manual_seed(recipe.seed)
        network = build_network(arch, channels, size, num_outputs).to(device)
        batch = min(recipe.batch_size, len(x))
        steps_per_epoch = max(1, len(x) // batch)
        optimizer = torch.optim.AdamW(network.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=steps or recipe.epochs * steps_per_epoch
        )
        total = steps or recipe.epochs * steps_per_epoch
        # Validation points: one per epoch, or `epochs` evenly spaced ones under a step budget.
        check_every = max(1, total // recipe.epochs)
        best: tuple[float, dict[str, Tensor]] | None = None
        network.train()
        for step in range(total):
            position = step % steps_per_epoch
            if position == 0:
                order = torch.randperm(len(x), generator=generator)
            idx = order[position * batch : (position + 1) * batch]
            images = random_shift(x[idx].cpu(), shift, generator)
            if augment is not None:
                images = augment(images, generator)
            images, targets = _task_batch(images, y[idx].cpu(), task, generator)
            _, logits = network(to_input(images.to(device)))
            loss = F.cross_entropy(logits, targets.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if val is not None and ((step + 1) % check_every == 0 or step + 1 == total):
                network.eval()
                score = classifier_accuracy(network, *val, device, recipe.seed, task)
                if best is None or score > best[0]:
                    best = (score, copy.deepcopy(network.state_dict()))
                network.train()
        if best is not None:
            network.load_state_dict(best[1])
        network.eval()
    return network


def random_shift(x: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Translates each image by up to ``shift`` pixels (zero padding): the classic MNIST augmentation."""
    if shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    out = torch.empty_like(x)
    # One slice per offset: (2 * shift + 1)^2 copies instead of a gather per pixel.
    for a in range(2 * shift + 1):
        for b in range(2 * shift + 1):
            mask = (dy == a) & (dx == b)
            if mask.any():
                out[mask] = padded[mask, :, a : a + h, b : b + w]
    return out


def rotate(x: Tensor, quarter_turns: Tensor) -> Tensor:
    out = torch.empty_like(x)
    for k in range(4):
        mask = quarter_turns == k
        if mask.any():
            out[mask] = torch.rot90(x[mask], k, dims=(2, 3))
    return out


def _task_batch(x: Tensor, y: Tensor, task: Task, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    if task == "classes":
        return x, y
    turns = torch.randint(0, 4, (len(x),), generator=generator)
    return rotate(x, turns), turns


@torch.no_grad()
def classifier_predictions(network: nn.Module, x: Tensor, device: torch.device) -> Tensor:
    """Predicted classes (CPU, int64) of ``network`` for ``uint8`` images ``x``."""
    out = [network(to_input(xb.to(device)))[1].argmax(1).cpu() for xb in x.cpu().split(1000)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def classifier_accuracy(
    network: nn.Module, x: Tensor, y: Tensor, device: torch.device, seed: int = 0, task: Task = "classes"
) -> float:
    """Top-1 accuracy of ``network`` on ``uint8`` images ``x`` (labels ``y``, or rotations)."""
    generator = torch.Generator().manual_seed(seed)
    correct = 0
    for xb, yb in zip(x.cpu().split(1000), y.cpu().split(1000)):
        xb, yb = _task_batch(xb, yb, task, generator)
        correct += int((network(to_input(xb.to(device)))[1].argmax(1).cpu() == yb).sum())
    return correct / max(1, len(x))
