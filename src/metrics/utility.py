"""How useful a synthetic dataset is: the Classification Accuracy Score (Ravuri & Vinyals 2019).

The framework's domain classifier (same network and training recipe as the feature extractor) is
trained three times and tested on the real test split each time:

* ``synthetic``: on the synthetic images only (the CAS);
* ``real``: on as many real training images (random subset, fixed seed);
* ``real+synthetic``: on both (augmentation).

``cas_ratio`` = synthetic / real accuracy; ``augmentation_gain`` = real+synthetic - real.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from src.data.base import GenerativeDataModule
from src.metrics.classifier_networks import resolve_arch
from src.metrics.classifier_training import TrainingRecipe, classifier_accuracy, fit_classifier
from src.utils.errors import UserError
from src.utils.logging import get_logger

log = get_logger(__name__)


def classification_accuracy_score(
    synthetic: tuple[Tensor, Tensor],
    datamodule: GenerativeDataModule,
    recipe: TrainingRecipe,
    arch: str = "auto",
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Test accuracies of the three classifiers and the derived ratios."""
    x_syn, y_syn = synthetic
    x_train, y_train = datamodule.split("train")
    x_test, y_test = datamodule.split("test")
    num_classes = int(datamodule.num_classes or 0)
    if num_classes < 2:
        raise UserError(
            f"data={datamodule.name} has no classes: the Classification Accuracy Score needs labelled data."
        )
    if tuple(x_syn.shape[1:]) != tuple(x_train.shape[1:]):
        raise UserError(
            f"the synthetic images are {tuple(x_syn.shape[1:])} (C, H, W) but data={datamodule.name} serves "
            f"{tuple(x_train.shape[1:])}: evaluate against the data the model was trained on."
        )
    if int(y_syn.max()) >= num_classes:
        raise UserError(
            f"the synthetic labels go up to {int(y_syn.max())} but data={datamodule.name} has {num_classes} classes."
        )
    n = len(x_syn)
    generator = torch.Generator().manual_seed(recipe.seed)
    pick = torch.randperm(len(x_train), generator=generator)[: min(n, len(x_train))]
    x_real, y_real = x_train.cpu()[pick], y_train.cpu()[pick]
    arch_name = resolve_arch(arch, int(x_train.shape[-1]))
    device = torch.device(device)
    sets = {
        "synthetic": (x_syn, y_syn),
        "real": (x_real, y_real),
        "real+synthetic": (torch.cat([x_real, x_syn]), torch.cat([y_real, y_syn])),
    }
    accuracy = {}
    for step, (name, (x, y)) in enumerate(sets.items(), start=1):
        started = time.perf_counter()
        log.info(
            f"CAS {step}/{len(sets)}: training the {arch_name} classifier on {name} ({len(x)} images, {recipe.epochs} epochs)"
        )
        network = fit_classifier(x, y, arch_name, num_classes, recipe, device)
        accuracy[name] = classifier_accuracy(network, x_test, y_test, device)
        log.info(
            f"CAS {step}/{len(sets)}: {name}: test accuracy {accuracy[name]:.4f} ({time.perf_counter() - started:.0f} s)"
        )
    return {
        "accuracy": accuracy,
        "n_synthetic": n,
        "n_real": len(x_real),
        "n_test": len(x_test),
        "cas_ratio": accuracy["synthetic"] / accuracy["real"] if accuracy["real"] else None,
        "augmentation_gain": accuracy["real+synthetic"] - accuracy["real"],
        "classifier": {"arch": arch_name, "recipe": recipe.__dict__},
    }
