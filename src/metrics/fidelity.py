"""Sample-quality scores computed from features (no images, no models).

FID, KID and IS are torch-fidelity's own functions. Precision/recall (Kynkäänniemi et al. 2019)
and density/coverage (Naeem et al. 2020) share one k-nearest-neighbour pass here, with the real
side's radii computed once and kept between evaluations: torch-fidelity's
``prc_features_to_metric`` recomputes them on every call and gives precision/recall only (the
cost of each is measured by ``experiments/benchmarks/eval_cost.py``). The tests check both against the references
on the same features: precision/recall equal torch-fidelity's (``<=``, its convention) and all four
equal ``prdc``'s (density/coverage use ``<``, prdc's convention).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

FidStatistics = dict[str, Any]
# Rows of the pairwise-distance matrix computed at once: bounds memory at chunk x N floats.
DISTANCE_CHUNK = 1024


def fid_statistics(features: Tensor) -> FidStatistics:
    """Mean and covariance (float64) of ``features`` ``(N, D)``."""
    return fid_features_to_statistics(features.detach().cpu())


def frechet_distance(fake: FidStatistics, real: FidStatistics) -> float:
    return float(fid_statistics_to_metric(fake, real, verbose=False)["frechet_inception_distance"])


def kernel_distance(
    fake: Tensor, real: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (unbiased MMD^2, cubic polynomial kernel): mean and std over ``subsets`` random subsets.
    The subset size is capped at the smaller sample count; when both sets are used whole (one
    subset) the std is NaN: there is no spread over subsets to report."""
    size = min(subset_size, len(fake), len(real))
    if size == len(fake) == len(real):
        # Every subset is then the whole of both sets (in another order), and the unbiased MMD^2 does
        # not depend on the order: the 100 subsets would repeat one value (std 0) at 100x the cost
        # (~5 s per evaluation on a CPU for 500 vs 500 images, the bundled MNIST splits).
        subsets = 1
    out = kid_features_to_metric(
        fake.detach().cpu(),
        real.detach().cpu(),
        kid_subsets=subsets,
        kid_subset_size=size,
        rng_seed=seed,
        verbose=False,
    )
    # One subset has no spread to measure: NaN (null in metrics.json), not a misleading 0.
    std = float(out["kernel_inception_distance_std"]) if subsets > 1 else math.nan
    return float(out["kernel_inception_distance_mean"]), std


def inception_score(logits: Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """IS: ``exp E[KL(p(y|x) || p(y))]``, mean and std over ``splits`` splits of shuffled samples."""
    out = isc_features_to_metric(
        logits.detach().cpu(), splits=min(splits, len(logits)), shuffle=True, rng_seed=seed
    )
    return float(out["inception_score_mean"]), float(out["inception_score_std"])


def knn_radii(features: Tensor, ks: tuple[int, ...], chunk: int = DISTANCE_CHUNK) -> dict[int, Tensor]:
    """Distance of every sample to its ``k``-th nearest other sample, for each ``k`` in ``ks``."""
    top = max(ks) + 1  # the sample itself is its nearest neighbour, at distance 0
    if len(features) < top:
        raise ValueError(f"{len(features)} samples are too few for the {max(ks)}-th nearest neighbour")
    sorted_distances = torch.cat(
        [
            torch.cdist(part, features).topk(top, dim=1, largest=False, sorted=True).values
            for part in features.split(chunk)
        ]
    )
    return {k: sorted_distances[:, k] for k in ks}


def kth_radii(
    features: Tensor, k: int, known: dict[int, Tensor] | None, chunk: int = DISTANCE_CHUNK
) -> Tensor:
    """``known[k]`` when a caller already has it (one k-NN pass serves several scores), else computed."""
    return known[k] if known is not None and k in known else knn_radii(features, (k,), chunk)[k]


def precision_recall_density_coverage(
    fake: Tensor,
    real: Tensor,
    pr_k: int = 3,
    dc_k: int = 5,
    real_radii: dict[int, Tensor] | None = None,
    chunk: int = DISTANCE_CHUNK,
    fake_radii: dict[int, Tensor] | None = None,
) -> dict[str, float]:
    """Precision and recall (k = ``pr_k``), density and coverage (k = ``dc_k``).

    precision: share of fakes inside some real sample's k-NN ball; recall: share of reals inside
    some fake's ball; density: average number of real balls containing a fake, divided by k;
    coverage: share of reals whose ball contains a fake. ``real_radii`` (from :func:`knn_radii`
    with both ks) lets a caller keep the real side between evaluations; ``fake_radii`` lets it share
    the generated side's k-NN pass with other scores.
    """
    real_radii = real_radii if real_radii is not None else knn_radii(real, (pr_k, dc_k), chunk)
    fake_radius = kth_radii(fake, pr_k, fake_radii, chunk)
    real_pr, real_dc = real_radii[pr_k], real_radii[dc_k]
    precise = torch.zeros(len(fake), dtype=torch.bool)
    density_count = torch.zeros(len(fake), dtype=torch.long)
    recalled = torch.zeros(len(real), dtype=torch.bool)
    nearest_fake = torch.full((len(real),), float("inf"), dtype=real.dtype)
    for start in range(0, len(fake), chunk):
        distance = torch.cdist(fake[start : start + chunk], real)  # (chunk, n_real)
        rows = slice(start, start + len(distance))
        precise[rows] = (distance <= real_pr).any(dim=1)
        density_count[rows] = (distance < real_dc).sum(dim=1)
        recalled |= (distance <= fake_radius[rows, None]).any(dim=0)
        nearest_fake = torch.minimum(nearest_fake, distance.amin(dim=0))
    return {
        "precision": float(precise.double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(density_count.double().sum() / (dc_k * len(fake))),
        "coverage": float((nearest_fake < real_dc).double().mean()),
    }
