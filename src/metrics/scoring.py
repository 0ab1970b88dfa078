"""Scoring generated images against a real split, outside Lightning and inside it.

:class:`Scorer` holds one feature extractor and everything computed on the real side (features,
FID statistics, k-NN radii, the training reference); :func:`score_samples` is the one-call API for
scripts (score exported images, or a model's ``sample``), and the Lightning callback uses the same
pieces, so both give the same numbers for the same settings.

Generated samples are drawn in fixed-size chunks, chunk ``i`` from a generator seeded with
:func:`chunk_seed` ``(seed, i)``: the sample set depends on the seed and the chunk size only, not on
how many processes drew it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from src.data.base import GenerativeDataModule
from src.metrics.detection import TEST_FRACTION, DetectionClassifier, detection_auc
from src.metrics.features import FeatureSet, RealFeatureCache, extract_features
from src.metrics.fidelity import (
    fid_statistics,
    frechet_distance,
    inception_score,
    kernel_distance,
    knn_radii,
    precision_recall_density_coverage,
)
from src.metrics.memorization import TrainReference, authenticity, mifid, nearest_neighbour_distances
from src.metrics.robust import (
    OUTLIER_QUANTILE,
    P_PR_A,
    P_PR_K,
    effective_k,
    outlier_ball_share,
    probabilistic_precision_recall,
)
from src.metrics.verdict import (
    COPY_RATIO,
    OUTSIDE_QUANTILE,
    RULES,
    Rule,
    class_tv,
    copy_share,
    judge,
    outside_share,
    outside_threshold,
    sharpness,
    verdict_warnings,
)
from src.metrics.wasserstein import (
    PATCH,
    PIXEL_SWD_SCALE,
    PyramidDescriptors,
    pixel_swd,
    pyramid_descriptors,
    pyramid_sizes,
    sliced_wasserstein,
)
from src.utils.errors import UserError
from src.utils.images import to_uint8
from src.utils.logging import get_logger

log = get_logger(__name__)

# ``sampler(n, generator)`` -> ``n`` images in ``[0, 1]``, e.g. ``GenerativeModule.sample``.
Sampler = Callable[..., Tensor]

# When scores stop meaning much; each crossing is a WARNING and an entry of the protocol's
# "warnings" (and of metrics.json's). README, "Metrics", states these floors.
EXTRACTOR_ACCURACY_FLOOR = 0.8  # held-out accuracy of the domain classifier
MIN_REAL_FOR_KNN = 200  # real images of the scored split
OUTLIER_SHARE_LIMIT = 0.5  # share of precision carried by the top 1 % largest k-NN balls
# The held-out real split scored as a stand-in generator against each scored split (the reference).
REFERENCE_SPLIT = {"test": "val", "val": "test"}


def add_reference(
    protocol: dict[str, Any],
    scores: dict[str, float],
    reference: tuple[dict[str, float], dict[str, Any]],
    rules: tuple[Rule, ...] = RULES,
    unit: str = "images",
) -> None:
    """Adds to a stage's ``protocol`` the real-vs-real ``reference`` (its scores and how it was drawn:
    ``reference/real/<score>``, ``None`` where not finite, and ``reference``), the verdict of
    ``scores`` against it under ``rules``, and a warning per failed check (``unit``: what the held-out
    real items are, ``images`` or ``rows``)."""
    values, about = reference
    protocol["reference"] = about
    protocol.update(
        {f"reference/real/{name}": value if math.isfinite(value) else None for name, value in values.items()}
    )
    protocol["verdict"] = judge(scores, values, rules)
    protocol["warnings"] += verdict_warnings(protocol["verdict"], unit=unit)


def default_n_fake(n_real: int, cap: int) -> int:
    """Generated samples to score against ``n_real`` real ones: as many, up to ``cap``."""
    return max(1, min(int(cap), int(n_real)))


@dataclass(frozen=True)
class ScoreOptions:
    """Which scores, and their parameters (the protocol records all of them)."""

    kid: bool = True
    isc: bool = True
    prdc: bool = True
    authenticity: bool = True
    mifid: bool = False
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    isc_splits: int = 10
    pr_k: int = 3
    dc_k: int = 5
    n_train_reference: int = 10_000
    mifid_eps: float = 0.1
    swd: bool = True
    swd_projections: int = 128
    swd_pixel: bool = True
    swd_pixel_patches: int = 8
    detection: bool = True
    detection_classifier: DetectionClassifier = "logistic"
    confidence_threshold: float = 0.9
    seed: int = 0

    @property
    def uses_train(self) -> bool:
        return self.authenticity or self.mifid

    def min_fake(self) -> int:
        """The fewest generated samples every enabled score is defined for."""
        return max(2, self.pr_k + 1 if self.prdc else 2, self.isc_splits if self.isc else 2)

    def min_real(self) -> int:
        # (Two samples of each set also give the detection test one per class in each half.)
        return max(2, max(self.pr_k, self.dc_k) + 1 if self.prdc else 2)


@dataclass
class RealSide:
    """What the scores need from one real split; computed once and reused."""

    features: FeatureSet
    fid_stats: dict[str, Any]
    radii: dict[int, Tensor] | None
    patches: PyramidDescriptors | None = None
    outside_threshold: float | None = None


def chunk_seed(seed: int, index: int) -> int:
    """A well-mixed seed for chunk ``index`` (``seed + index`` would make runs with adjacent seeds share chunks)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def chunk_sizes(n: int, chunk_size: int) -> list[int]:
    return [min(chunk_size, n - start) for start in range(0, n, chunk_size)]


def sample_chunk(sampler: Sampler, index: int, size: int, seed: int, device: torch.device) -> Tensor:
    """Chunk ``index`` of the generated set: ``size`` samples from their own seeded generator."""
    generator = torch.Generator(device=device).manual_seed(chunk_seed(seed, index))
    return sampler(size, generator=generator)


class Scorer:
    """Scores generated feature sets against the splits of one data module in one feature space.

    Args:
        extractor: a domain or Inception extractor (``weights_sha256``, ``describe()``, torch-fidelity
            ``FeatureExtractorBase`` interface).
        options: which scores and their parameters.
        cache_dir: root of the on-disk real-feature cache (``None``: memory only).
        batch_size: images per extractor call.
    """

    def __init__(
        self,
        extractor: Any,
        options: ScoreOptions | None = None,
        cache_dir: str | Path | None = None,
        batch_size: int = 500,
    ) -> None:
        self.extractor = extractor
        self.options = options or ScoreOptions()
        if self.options.isc and not extractor.has_class_logits:
            # A rotation-trained extractor's logits are not classes: IS means nothing there.
            self.options = ScoreOptions(**{**asdict(self.options), "isc": False})
        self.batch_size = batch_size
        self.real_features = RealFeatureCache(cache_dir)
        self._real: dict[tuple[str, str], RealSide] = {}
        self._train: dict[str, TrainReference] = {}
        self._references: dict[tuple[str, str, int], tuple[dict[str, float], dict[str, Any]]] = {}

    # ------------------------------------------------------------------ real side
    def real_side(self, datamodule: GenerativeDataModule, split: str) -> RealSide:
        key = (split, datamodule.fingerprint(split))
        if key not in self._real:
            features = self.real_features.get(self.extractor, datamodule, split, self.batch_size)
            radii = None
            if self.options.prdc:
                # Rank 1 too: the nearest-neighbour distances behind outside_share's threshold.
                radii = knn_radii(features.features, self.knn_ranks(len(features), self.options.dc_k, 1))
            patches = None
            if self.pixel_swd_enabled(datamodule):
                images = datamodule.split(split)[0]
                patches = pyramid_descriptors(
                    images, self.options.swd_pixel_patches, self._patch_seed("real")
                )
            threshold = outside_threshold(radii[1]) if radii is not None else None
            self._real[key] = RealSide(features, fid_statistics(features.features), radii, patches, threshold)
        return self._real[key]

    def knn_ranks(self, n: int, *ks: int) -> tuple[int, ...]:
        """The neighbour ranks one k-NN pass over ``n`` samples computes: precision's ``pr_k``, the
        given ones, and P-precision/recall's ``P_PR_K`` where the set is large enough for it."""
        return tuple(sorted({self.options.pr_k, *ks, *([P_PR_K] if n > P_PR_K else [])}))

    def train_reference(self, datamodule: GenerativeDataModule) -> TrainReference:
        fingerprint = datamodule.fingerprint("train")
        if fingerprint not in self._train:
            features = self.real_features.get(
                self.extractor,
                datamodule,
                "train",
                self.batch_size,
                limit=self.options.n_train_reference,
                subset_seed=self.options.seed,
            )
            self._train[fingerprint] = TrainReference.from_features(features.features)
        return self._train[fingerprint]

    def pixel_swd_enabled(self, datamodule: GenerativeDataModule) -> bool:
        """Pixel SWD needs images with at least one pyramid level (>= 14 px)."""
        size = getattr(datamodule, "image_size", None)
        return self.options.swd_pixel and bool(size) and bool(pyramid_sizes(int(size)))

    def _patch_seed(self, side: str) -> int:
        # Real and generated patch positions come from their own streams of the evaluation seed
        # (three entropy words: never a chunk's seed).
        stream = {"real": 0, "fake": 1}[side]
        return int(np.random.SeedSequence([int(self.options.seed), PATCH, stream]).generate_state(1)[0])

    # ------------------------------------------------------------------ fake side
    def features(self, images: Tensor) -> FeatureSet:
        """Features of ``uint8`` images, on the extractor's device."""
        return extract_features(self.extractor, images, self.batch_size, to_cpu=False)

    # ------------------------------------------------------------------ scores
    def score(
        self,
        fake: FeatureSet,
        datamodule: GenerativeDataModule,
        split: str,
        images: Tensor | None = None,
    ) -> dict[str, float]:
        """Every enabled score of ``fake`` against ``split`` (FID always).

        ``images``: the generated ``uint8`` images behind ``fake``, for the pixel SWD (skipped without).
        """
        opts = self.options
        fake = FeatureSet(fake.features.cpu(), None if fake.logits is None else fake.logits.cpu())
        if len(fake) < opts.min_fake():
            raise UserError(
                f"{len(fake)} generated samples are too few for these scores: use at least {opts.min_fake()}."
            )
        real = self.real_side(datamodule, split)
        scores = {"fid": frechet_distance(fid_statistics(fake.features), real.fid_stats)}
        # One k-NN pass over the fakes serves precision/recall and P-recall.
        fake_radii = knn_radii(fake.features, self.knn_ranks(len(fake))) if opts.prdc else None
        if opts.kid:
            scores["kid"], scores["kid_std"] = kernel_distance(
                fake.features, real.features.features, opts.kid_subsets, opts.kid_subset_size, opts.seed
            )
        if opts.isc and fake.logits is not None:
            scores["is"], scores["is_std"] = inception_score(fake.logits, opts.isc_splits, opts.seed)
            confidence = torch.softmax(fake.logits.double(), dim=1).amax(dim=1)
            scores["confident_frac"] = float((confidence >= opts.confidence_threshold).double().mean())
        if opts.prdc:
            scores.update(
                precision_recall_density_coverage(
                    fake.features,
                    real.features.features,
                    opts.pr_k,
                    opts.dc_k,
                    real_radii=real.radii,
                    fake_radii=fake_radii,
                )
            )
            scores.update(
                probabilistic_precision_recall(
                    fake.features, real.features.features, real_radii=real.radii, fake_radii=fake_radii
                )
            )
            scores["precision_outlier_share"] = outlier_ball_share(
                fake.features, real.features.features, real.radii[opts.pr_k]
            )
            scores["outside_share"] = outside_share(
                fake.features, real.features.features, real.outside_threshold
            )
        if opts.swd:
            scores["swd"] = sliced_wasserstein(
                fake.features, real.features.features, opts.swd_projections, opts.seed, p=2
            )
        if real.patches is not None and images is not None:
            fake_patches = pyramid_descriptors(images, opts.swd_pixel_patches, self._patch_seed("fake"))
            scores.update(pixel_swd(fake_patches, real.patches, opts.swd_projections, opts.seed))
        if opts.detection:
            scores["detection_auc"] = detection_auc(
                fake.features, real.features.features, opts.seed, opts.detection_classifier
            )
        if images is not None:
            scores["sharpness"] = sharpness(images)
        labels = datamodule.split(split)[1]
        num_classes = int(
            datamodule.num_classes if datamodule.num_classes is not None else len(datamodule.class_names)
        )
        if (
            opts.isc
            and fake.logits is not None
            and labels is not None
            and num_classes == fake.logits.shape[1]
        ):
            scores["class_tv"] = class_tv(fake.logits.argmax(dim=1), labels, num_classes)
        if opts.uses_train:
            train = self.train_reference(datamodule)
            if opts.authenticity:
                scores["authenticity"] = authenticity(fake.features, train)
                scores["copy_share"] = copy_share(fake.features, train)
                scores.update(
                    nearest_neighbour_distances(fake.features, train.features, real.features.features)
                )
            if opts.mifid:
                scores["mifid"] = mifid(scores["fid"], fake.features, train.features, opts.mifid_eps)
        return scores

    def protocol(
        self,
        datamodule: GenerativeDataModule,
        split: str,
        n_fake: int,
        scores: dict[str, float] | None = None,
        **generation: Any,
    ) -> dict[str, Any]:
        """How the scores of ``split`` were computed: extractor and hash, sample counts, seeds,
        parameters, and the warnings that ``scores`` (when given) call for."""
        opts = self.options
        n_real = len(datamodule.split(split)[0])
        protocol: dict[str, Any] = {
            **self.extractor.describe(),
            "dataset": datamodule.name,
            "split": split,
            "split_fingerprint": datamodule.fingerprint(split),
            "n_real": n_real,
            "n_fake": n_fake,
            "seed": opts.seed,
            **generation,
            "fake_pixels": "uint8, round(255 x)",
            "scores": self.score_names(getattr(datamodule, "image_size", None)),
        }
        if opts.kid:
            protocol.update(
                kid_subsets=opts.kid_subsets, kid_subset_size=min(opts.kid_subset_size, n_fake, n_real)
            )
        if opts.isc:
            protocol["is_splits"] = min(opts.isc_splits, n_fake)
            protocol["confidence_threshold"] = opts.confidence_threshold
        if opts.swd:
            protocol.update(swd_projections=opts.swd_projections, swd_p=2, swd_seed=opts.seed)
        if self.pixel_swd_enabled(datamodule):
            protocol["swd_pixel"] = {
                "levels": pyramid_sizes(int(datamodule.image_size)),
                "patch": PATCH,
                "patches_per_image": opts.swd_pixel_patches,
                "projections": opts.swd_projections,
                "p": 1,
                "scale": PIXEL_SWD_SCALE,
            }
        if opts.detection:
            protocol["detection"] = {
                "classifier": opts.detection_classifier,
                "n_per_class": min(n_fake, n_real),
                "test_fraction": TEST_FRACTION,
                "seed": opts.seed,
            }
        if opts.prdc:
            protocol.update(
                pr_k=opts.pr_k,
                dc_k=opts.dc_k,
                p_pr_a=P_PR_A,
                p_pr_k=effective_k(P_PR_K, n_real, n_fake),
                outlier_quantile=OUTLIER_QUANTILE,
            )
        if opts.uses_train:
            protocol["n_train_reference"] = min(opts.n_train_reference, len(datamodule.split("train")[0]))
        if opts.mifid:
            protocol["mifid_eps"] = opts.mifid_eps
        if opts.prdc:
            protocol["outside_quantile"] = OUTSIDE_QUANTILE
        if opts.authenticity:
            protocol["copy_ratio"] = COPY_RATIO
        protocol["warnings"] = self.warnings(split, n_real, scores or {})
        if scores:
            add_reference(protocol, scores, self.reference(datamodule, split, n_fake))
        return protocol

    def reference(
        self, datamodule: GenerativeDataModule, split: str, n_fake: int
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Real against real: as many held-out real images as samples (at most the held-out split:
        val for test, test for val), scored against ``split`` exactly as samples are. What a perfect
        generator would get at this count with this extractor; empty, with the reason, when the
        held-out split is too small."""
        other = REFERENCE_SPLIT.get(split)
        key = (split, other or "", n_fake)
        if key in self._references:
            return self._references[key]
        if other is None:
            about: dict[str, Any] = {"split": None, "n": 0, "reason": f"no held-out split beside {split}"}
            self._references[key] = ({}, about)
            return self._references[key]
        images = datamodule.split(other)[0]
        n = min(n_fake, len(images))
        about = {
            "split": other,
            "n": n,
            "images": f"{n} of the {other} split, drawn with seed {self.options.seed}",
        }
        if n < max(self.options.min_fake(), self.options.min_real()):
            about["reason"] = f"the {other} split has {len(images)} images: too few for a reference"
            self._references[key] = ({}, about)
            return self._references[key]
        generator = torch.Generator().manual_seed(int(self.options.seed))
        index = torch.randperm(len(images), generator=generator)[:n].sort().values
        held_out = self.real_features.get(self.extractor, datamodule, other, self.batch_size)
        features = FeatureSet(
            held_out.features[index], None if held_out.logits is None else held_out.logits[index]
        )
        self._references[key] = (self.score(features, datamodule, split, images=images[index]), about)
        return self._references[key]

    def warnings(self, split: str, n_real: int, scores: dict[str, float]) -> list[str]:
        """What makes these scores untrustworthy, each with the fix; logged as WARNINGs."""
        found = []
        meta = getattr(self.extractor, "meta", {}) or {}
        accuracy, outputs = meta.get("test_accuracy"), meta.get("num_outputs")
        if accuracy is not None and outputs:
            chance = 1.0 / outputs
            if accuracy < EXTRACTOR_ACCURACY_FLOOR:
                found.append(
                    f"the feature extractor reaches {accuracy:.0%} held-out accuracy (chance {chance:.0%}, floor "
                    f"{EXTRACTOR_ACCURACY_FLOOR:.0%}): its features barely tell the data apart, so FID, precision/recall "
                    "and the other scores say little. Fix: more (or larger) training images, a longer "
                    "metrics.extractor_epochs, or metrics=inception."
                )
        if n_real < MIN_REAL_FOR_KNN:
            found.append(
                f"the real {split} split has {n_real} images (< {MIN_REAL_FOR_KNN}): FID and the k-NN scores "
                "(precision, recall, density, coverage) are unreliable on so few. Fix: more data, or a larger "
                f"{split} split (data.val_fraction / data.test_fraction for image folders)."
            )
        share = scores.get("precision_outlier_share")
        if share is not None and share > OUTLIER_SHARE_LIMIT:
            found.append(
                f"{share:.0%} of the samples that precision counts lie only inside the k-NN balls of the top "
                f"{1 - OUTLIER_QUANTILE:.0%} largest-ball real images (outliers): precision is carried by them. "
                "Read p_precision and density instead, which outliers cannot inflate."
            )
        return found

    def score_names(self, image_size: int | None = None) -> list[str]:
        """The names :meth:`score` returns, in order."""
        return self.names(self.options, image_size)

    @staticmethod
    def names(opts: ScoreOptions, image_size: int | None = None) -> list[str]:
        """The scores for these options; the pixel SWD's only with the image size (its levels)."""
        names = ["fid"]
        names += ["kid", "kid_std"] if opts.kid else []
        names += ["is", "is_std", "confident_frac"] if opts.isc else []
        names += (
            [
                "precision",
                "recall",
                "density",
                "coverage",
                "p_precision",
                "p_recall",
                "precision_outlier_share",
            ]
            if opts.prdc
            else []
        )
        names += ["outside_share"] if opts.prdc else []
        names += ["swd"] if opts.swd else []
        sizes = pyramid_sizes(image_size) if opts.swd_pixel and image_size else []
        names += ["swd_pixel", *(f"swd_pixel_{size}" for size in sizes)] if sizes else []
        names += ["detection_auc"] if opts.detection else []
        names += ["sharpness"] if image_size else []
        names += ["class_tv"] if opts.isc else []
        names += ["authenticity", "copy_share", "nn_train", "nn_heldout"] if opts.authenticity else []
        names += ["mifid"] if opts.mifid else []
        return names


def score_samples(
    fake: Tensor | Sampler,
    datamodule: GenerativeDataModule,
    split: str = "test",
    *,
    extractor: Any = None,
    cache_dir: str | Path | None = None,
    n_fake: int = 10_000,
    chunk_size: int = 500,
    options: ScoreOptions | None = None,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    scorer: Scorer | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Scores generated images against a real split; returns ``(scores, protocol)``.

    Args:
        fake: ``uint8`` images ``(N, C, H, W)`` (an exported dataset), float images in ``[0, 1]``
            (quantised as a PNG would be), or a sampler ``f(n, generator=g)`` returning ``[0, 1]``
            images, such as a model's ``sample``: then ``n_fake`` images are drawn in chunks of
            ``chunk_size`` with seeds from ``options.seed``, as the training callback draws them.
        datamodule: the real data (set up on first use).
        split: the real split to compare with ("test" for final numbers).
        extractor: defaults to the domain extractor of ``datamodule`` (trained and cached under
            ``cache_dir`` on first use).
        scorer: reuse one :class:`Scorer` across calls to keep the real side in memory.

    Example::

        scores, protocol = score_samples(model.sample, datamodule, "test", cache_dir=".cache/genlab")
    """
    device = torch.device(device or "cpu")
    if scorer is None:
        if extractor is None:
            if cache_dir is None:
                raise UserError(
                    "score_samples needs cache_dir (where the domain extractor is kept) or an extractor."
                )
            from src.metrics.domain import load_extractor

            extractor = load_extractor(datamodule, cache_dir, device=device)
        scorer = Scorer(extractor, options, cache_dir, batch_size)
    generation: dict[str, Any] = {}
    if callable(fake) and not isinstance(fake, Tensor):
        chunks = [
            to_uint8(sample_chunk(fake, i, size, scorer.options.seed, device))
            for i, size in enumerate(chunk_sizes(n_fake, chunk_size))
        ]
        parts = [scorer.features(chunk) for chunk in chunks]
        features = FeatureSet(
            torch.cat([p.features for p in parts]),
            torch.cat([p.logits for p in parts]) if parts and parts[0].logits is not None else None,
        )
        images = torch.cat(chunks).cpu()
        generation = {"chunk_size": chunk_size, "chunk_seeds": "SeedSequence([seed, chunk index])"}
    else:
        images = fake if fake.dtype == torch.uint8 else to_uint8(fake)
        features = scorer.features(images)
    scores = scorer.score(features, datamodule, split, images=images.cpu())
    protocol = scorer.protocol(datamodule, split, len(features), scores, **generation)
    for warning in protocol["warnings"]:
        log.warning(f"{split} scores: {warning}")
    return scores, protocol
