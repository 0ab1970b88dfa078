"""Memorization scores on constructed cases: copies of training data must be caught."""

from __future__ import annotations

import torch

from src.metrics import ScoreOptions, score_samples
from src.metrics.memorization import TrainReference, authenticity, mifid, nearest_neighbour_distances


def draws(n: int, seed: int, dim: int = 16) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_copies_are_unauthentic_and_fresh_draws_mostly_authentic() -> None:
    train = TrainReference.from_features(draws(500, 0))
    copies = train.features[:100].clone()
    fresh = draws(100, 1)
    assert authenticity(copies, train) == 0.0
    # A fresh draw from the training distribution lands inside its nearest training sample's
    # neighbour distance about as often as not; a copy always does.
    fresh_score = authenticity(fresh, train)
    assert 0.3 < fresh_score < 1.0
    assert authenticity(torch.cat([copies, fresh]), train) == fresh_score / 2
    # Nearly exact copies (a pixel's worth of noise) are caught too.
    assert authenticity(copies + 1e-4 * draws(100, 2), train) == 0.0


def test_nearest_neighbour_distances_reveal_copies() -> None:
    train, heldout = draws(400, 0), draws(100, 1)
    copies = nearest_neighbour_distances(train[:100], train, heldout)
    assert copies["nn_train"] < 1e-3 < copies["nn_heldout"]
    # Fresh draws of the data distribution are as far from the training set as held-out data.
    fresh = nearest_neighbour_distances(draws(100, 2), train, heldout)
    assert 0.9 < fresh["nn_train"] / fresh["nn_heldout"] < 1.1


def test_mifid_penalises_copies_only() -> None:
    train = draws(300, 0)
    assert mifid(10.0, train[:50], train, eps=0.1) > 1e6
    assert mifid(10.0, -draws(50, 1), train, eps=1e-6) == 10.0


def test_copied_training_images_score_as_memorized(mnist_files, mnist_extractor) -> None:
    train_images = mnist_files.split("train")[0]
    options = ScoreOptions(kid=False, isc=False, prdc=False, mifid=True)
    copied, protocol = score_samples(
        train_images[:100], mnist_files, "test", extractor=mnist_extractor, options=options
    )
    novel, _ = score_samples(
        mnist_files.split("val")[0], mnist_files, "test", extractor=mnist_extractor, options=options
    )
    assert copied["authenticity"] == 0.0 and novel["authenticity"] > 0.3
    assert copied["nn_train"] < 1e-2 * copied["nn_heldout"]
    assert 0.5 < novel["nn_train"] / novel["nn_heldout"] < 2
    assert copied["mifid"] > 1e3 * copied["fid"]
    assert protocol["n_train_reference"] == len(train_images)
