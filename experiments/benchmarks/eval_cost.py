"""Evaluation cost: FID + KID + IS + precision/recall + density/coverage, fake vs real 28x28 images.

What a test-time evaluation of an MNIST model costs with the default (domain) extractor:
``n`` generated images (their features) against ``n`` real images, first with an empty cache
(real features, FID statistics and k-NN radii computed), then again with new fakes (the real side
comes from memory), then in a new scorer as a second run would (real features from the disk cache).
The images are the bundled MNIST subset, shifted (real) and shifted plus noise (fake): the cost
does not depend on what the images show. Training the extractor is reported separately.

    python -m experiments.benchmarks.eval_cost --n 10000 [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from src.data import MnistDataModule
from src.data.base import GenerativeDataModule
from src.data.mnist import _bundled_mnist
from src.metrics import ScoreOptions, Scorer, TrainingRecipe, load_extractor
from src.metrics.classifier_training import random_shift
from src.metrics.detection import detection_auc
from src.metrics.fidelity import (
    fid_statistics,
    frechet_distance,
    inception_score,
    kernel_distance,
    knn_radii,
    precision_recall_density_coverage,
)
from src.metrics.memorization import TrainReference, authenticity
from src.metrics.robust import outlier_ball_share, probabilistic_precision_recall
from src.metrics.wasserstein import sliced_wasserstein

TARGET_SECONDS = 15.0


class ImageSets(GenerativeDataModule):
    """In-memory splits (the real side of the benchmark)."""

    name = "bench"

    def __init__(self, splits: dict[str, torch.Tensor]) -> None:
        super().__init__(data_dir=".", image_size=28, channels=1, num_classes=10)
        self._given = splits

    def _load(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {name: (x, torch.zeros(len(x), dtype=torch.long)) for name, x in self._given.items()}


def image_set(n: int, seed: int, noise: float) -> torch.Tensor:
    """``n`` MNIST digits (the 5k subset, repeated), shifted by up to 2 px, plus pixel noise."""
    digits = _bundled_mnist()[0]
    generator = torch.Generator().manual_seed(seed)
    x = digits[torch.randint(len(digits), (n,), generator=generator)]
    x = random_shift(x, 2, generator).float() / 255
    x = x + noise * torch.randn(x.shape, generator=generator)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def run(n: int = 10_000, cache_dir: str | Path | None = None) -> dict:
    """Measures one evaluation of ``n`` fakes vs ``n`` reals; returns a flat dict of figures."""
    root = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp())
    try:
        mnist = MnistDataModule(data_dir=str(root / "data"), source="bundled")
        mnist.prepare_data()
        extractor, train_s = timed(lambda: load_extractor(mnist, root, recipe=TrainingRecipe()))
        real = image_set(n, seed=1, noise=0.0)
        data = ImageSets({"train": mnist.split("train")[0], "val": real[:100], "test": real})
        options = ScoreOptions(authenticity=False)
        feature_cache = root / "bench-features"
        shutil.rmtree(feature_cache / "features", ignore_errors=True)

        # First evaluation: nothing cached.
        scorer = Scorer(extractor, options, feature_cache)
        fake = image_set(n, seed=2, noise=0.1)
        fake_features, fake_s = timed(lambda: scorer.features(fake))
        _, real_first_s = timed(lambda: scorer.real_side(data, "test"))
        scores, score_s = timed(lambda: scorer.score(fake_features, data, "test"))
        first_s = fake_s + real_first_s + score_s

        # Second evaluation (next epoch): new fakes, the real side from memory.
        fake2 = image_set(n, seed=3, noise=0.1)

        def evaluate_again() -> dict:
            return scorer.score(scorer.features(fake2), data, "test")

        _, real_second_s = timed(lambda: scorer.real_side(data, "test"))
        _, second_s = timed(evaluate_again)

        # A second run: a new scorer, real features from the disk cache.
        def new_run() -> dict:
            fresh = Scorer(extractor, options, feature_cache)
            return fresh.score(fresh.features(fake2), data, "test")

        _, second_run_s = timed(new_run)

        # The scores one by one (fake and real features in hand), as the scorer calls them: the
        # real side's k-NN radii kept, one k-NN pass over the fakes shared.
        real_side = scorer.real_side(data, "test")
        f, r, real_radii = fake_features.features.cpu(), real_side.features.features, real_side.radii
        _, fid_s = timed(lambda: frechet_distance(fid_statistics(f), real_side.fid_stats))
        _, kid_s = timed(
            lambda: kernel_distance(f, r, options.kid_subsets, options.kid_subset_size, options.seed)
        )
        _, is_s = timed(lambda: inception_score(fake_features.logits.cpu(), options.isc_splits, options.seed))
        fake_radii, fake_knn_s = timed(lambda: knn_radii(f, scorer.knn_ranks(len(f))))
        _, prdc_s = timed(
            lambda: precision_recall_density_coverage(
                f, r, options.pr_k, options.dc_k, real_radii=real_radii, fake_radii=fake_radii
            )
        )
        _, p_pr_s = timed(
            lambda: probabilistic_precision_recall(f, r, real_radii=real_radii, fake_radii=fake_radii)
        )
        _, outlier_s = timed(lambda: outlier_ball_share(f, r, real_radii[options.pr_k]))
        _, swd_s = timed(lambda: sliced_wasserstein(f, r, options.swd_projections, options.seed))
        _, detection_s = timed(lambda: detection_auc(f, r, options.seed, options.detection_classifier))
        train_reference = TrainReference.from_features(scorer.features(data.split("train")[0]).features.cpu())
        _, authenticity_s = timed(lambda: authenticity(f, train_reference))
        return {
            "n_fake": n,
            "n_real": n,
            "image_size": 28,
            "extractor": extractor.extractor_id,
            "extractor_test_accuracy": extractor.meta["test_accuracy"],
            "threads": torch.get_num_threads(),
            "cores": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "extractor_train_s": train_s,
            "first_eval_s": first_s,
            "second_eval_s": second_s,
            "second_run_eval_s": second_run_s,
            "fake_features_s": fake_s,
            "real_side_first_s": real_first_s,
            "real_side_second_s": real_second_s,
            "scores_s": score_s,
            "fid_s": fid_s,
            "kid_s": kid_s,
            "is_s": is_s,
            "fake_knn_s": fake_knn_s,
            "prdc_s": prdc_s,
            "p_precision_recall_s": p_pr_s,
            "outlier_share_s": outlier_s,
            "swd_s": swd_s,
            "detection_s": detection_s,
            "authenticity_s (not in the total)": authenticity_s,
            "target_s": TARGET_SECONDS,
            "fid": scores["fid"],
        }
    finally:
        if cache_dir is None:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--cache-dir", default=None, help="keep the trained extractor here between runs")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    results = run(args.n, args.cache_dir)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
