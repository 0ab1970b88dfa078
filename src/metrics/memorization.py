"""Does the generator copy its training data? Scores in the extractor's feature space.

* Authenticity (Alaa et al. 2022): a generated sample is *unauthentic* when it sits closer to its
  nearest training sample than that training sample sits to its own nearest training neighbour.
  ``authenticity`` is the share of authentic samples: 1 for a model that never copies, 0 when
  every sample is a copy of a training image.
* Nearest-neighbour distances: the mean distance from generated samples to their nearest
  training sample (``nn_train``) and to their nearest held-out real sample (``nn_heldout``).
  A model that generalises puts its samples as far from the training set as unseen data are
  (the reference's ``nn_train``); a copying one puts them closer.
* MiFID (Bai et al. 2021, the Kaggle "Generative Dog Images" rule): FID divided by the mean
  minimum cosine distance from generated to training features when that distance is below
  ``eps`` (the torchmetrics definition).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from src.metrics.fidelity import DISTANCE_CHUNK, knn_radii


@dataclass
class TrainReference:
    """Training features and each one's distance to its nearest other training sample."""

    features: Tensor
    nn_radius: Tensor

    @classmethod
    def from_features(cls, features: Tensor) -> TrainReference:
        return cls(features, knn_radii(features, (1,))[1])


def nearest(queries: Tensor, reference: Tensor, chunk: int = DISTANCE_CHUNK) -> tuple[Tensor, Tensor]:
    """Distance to and index of each query's nearest reference sample."""
    distances, indices = [], []
    for part in queries.split(chunk):
        d, i = torch.cdist(part, reference).min(dim=1)
        distances.append(d)
        indices.append(i)
    return torch.cat(distances), torch.cat(indices)


def authenticity(fake: Tensor, train: TrainReference) -> float:
    """Share of generated samples that are not closer to a training sample than its nearest neighbour is."""
    distance, index = nearest(fake, train.features)
    return float((distance >= train.nn_radius[index]).double().mean())


def nearest_neighbour_distances(fake: Tensor, train: Tensor, heldout: Tensor) -> dict[str, float]:
    """Mean distance of generated samples to their nearest training image (``nn_train``) and to
    their nearest held-out real image (``nn_heldout``, the scored split).

    A model that generalises puts its samples about as far from the training images as from images
    it never saw; a copying one puts them much closer to the training images (the comparison of
    Meehan et al. 2020). What held-out real images get is the evaluation's reference
    (``reference/real/nn_train``).
    """
    return {
        "nn_train": float(nearest(fake, train)[0].double().mean()),
        "nn_heldout": float(nearest(fake, heldout)[0].double().mean()),
    }


def memorization_distance(fake: Tensor, train: Tensor, chunk: int = DISTANCE_CHUNK) -> float:
    """Mean over generated samples of the minimum cosine distance ``1 - |cos|`` to training features."""
    train_unit = torch.nn.functional.normalize(train.double(), dim=1)
    minima = []
    for part in fake.split(chunk):
        cosine = torch.nn.functional.normalize(part.double(), dim=1) @ train_unit.T
        minima.append((1.0 - cosine.abs()).min(dim=1).values)
    return float(torch.cat(minima).mean())


def mifid(fid: float, fake: Tensor, train: Tensor, eps: float = 0.1) -> float:
    distance = memorization_distance(fake, train)
    if fid <= 1e-8:
        return 0.0
    return fid / (distance + 1e-14) if distance < eps else fid
