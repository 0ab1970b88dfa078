"""The Lightning callback behind ``conf/metrics/``: scores generated samples during training and test.

Every ``every_n_epochs`` validation epochs it scores ``n_fake_val`` samples against the val split
(``val/fid``, ``val/kid``, ...), and at test ``n_fake_test`` against the test split (``test/...``).
Toy 2-D data get the PacGAN mode statistics instead (``val/modes``, ``val/hq_frac``, ``val/rkl``)
and the exact Wasserstein distances to the real split (``val/w1``, ``val/w2``).

Multi-process runs (DDP) give the numbers of a single process, bit for bit:

* samples are drawn in fixed-size chunks, chunk ``i`` from its own seed; rank ``r`` draws chunks
  ``r, r + W, ...`` and extracts their features;
* the chunks' features are gathered on every rank (padded to equal size) and put back in chunk
  order, so the feature set is the same for any number of processes;
* rank 0 scores it (the real side lives there) and broadcasts the scores, so every rank logs the
  same values and ``val/fid`` can drive checkpointing. Every collective runs on all ranks.

The feature extractor must exist before worker processes start: the entry points call
:meth:`SampleQuality.prepare` in the main process (it trains the domain extractor on first use);
the workers load it from the cache in ``setup`` and all ranks check that they hold the same weights.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from src.data.base import GenerativeDataModule
from src.metrics.classifier_networks import ClassifierArch
from src.metrics.classifier_training import TrainingRecipe
from src.metrics.detection import DetectionClassifier
from src.metrics.domain import load_extractor
from src.metrics.features import FeatureSet
from src.metrics.inception import load_inception, locate_inception_weights
from src.metrics.membership import membership_audit, model_white_box
from src.metrics.modes import HQ_SIGMAS, mode_statistics
from src.metrics.modes import PROTOCOL as MODES_PROTOCOL
from src.metrics.score_callback import ScoreCallback
from src.metrics.scoring import ScoreOptions, Scorer, chunk_sizes, default_n_fake, sample_chunk
from src.metrics.wasserstein import exact_wasserstein
from src.utils.errors import UserError
from src.utils.images import to_uint8
from src.utils.logging import get_logger
from src.utils.types import Fraction, PositiveFloat, PositiveInt

log = get_logger(__name__)

# Default sample counts: as many as the real split, at most this many (metrics.n_fake_val / _test).
N_FAKE_CAP = {"val": 2000, "test": 10_000}

MODE_SCORES = ("modes", "hq_frac", "rkl")
# Exact Wasserstein distances of toy 2-D samples to the real split (POT).
POINT_DISTANCES = ("w1", "w2")


class SampleQuality(ScoreCallback):
    """Sample-quality scores with their protocol (base of :class:`DomainMetrics` and :class:`InceptionMetrics`).

    Args:
        cache_dir: root of the extractor and real-feature caches (``${paths.cache_dir}``).
        every_n_epochs: score at the end of every n-th validation epoch.
        n_fake_val, n_fake_test: generated samples scored at validation and at test (None: as many as
            the real split holds, at most 2,000 / 10,000).
        n_points: generated points for the toy 2-D mode statistics (2,500 in the PacGAN protocol).
        chunk_size: samples per seeded chunk (part of the protocol: changing it changes the samples).
        batch_size: images per feature-extractor call.
        seed: evaluation seed (samples, KID subsets, IS splits, train-reference subset).
        kid, isc, prdc, authenticity, mifid: which scores besides FID.
        kid_subsets, kid_subset_size: KID's subsets (the size is capped at the sample counts).
        isc_splits: splits of the Inception Score.
        pr_k, dc_k: neighbourhood sizes of precision/recall and density/coverage.
        n_train_reference: training images that authenticity, nearest-neighbour distances and MiFID compare with.
        mifid_eps: MiFID's cosine-distance threshold.
        audit: at test, run the membership-inference audit (``src.metrics.membership``): the
            model's white-box attack and the closest-synthetic-image attack on ``audit_n_synthetic``
            samples, ``audit_n`` training vs as many test images; logs ``audit/<attack>/...``.
        audit_n, audit_n_synthetic: candidates per side, and generated images, of the audit.
        swd, swd_projections: sliced Wasserstein distance in feature space, and its random directions
            (also those of the pixel SWD).
        swd_pixel, swd_pixel_patches: multi-scale pixel SWD (Karras et al. 2018) and its 7x7 patches
            per image and pyramid level.
        detection, detection_classifier: classifier two-sample test on features (``logistic`` | ``mlp``).
        confidence_threshold: class probability above which a sample counts in ``confident_frac``.
    """

    def __init__(
        self,
        *,
        cache_dir: str,
        every_n_epochs: PositiveInt = 1,
        n_fake_val: PositiveInt | None = None,
        n_fake_test: PositiveInt | None = None,
        n_points: PositiveInt = 2500,
        chunk_size: PositiveInt = 500,
        batch_size: PositiveInt = 500,
        seed: int = 0,
        kid: bool = True,
        isc: bool = True,
        prdc: bool = True,
        authenticity: bool = True,
        mifid: bool = False,
        kid_subsets: PositiveInt = 100,
        kid_subset_size: PositiveInt = 1000,
        isc_splits: PositiveInt = 10,
        pr_k: PositiveInt = 3,
        dc_k: PositiveInt = 5,
        n_train_reference: PositiveInt = 10_000,
        mifid_eps: PositiveFloat = 0.1,
        audit: bool = False,
        audit_n: PositiveInt = 500,
        audit_n_synthetic: PositiveInt = 2000,
        swd: bool = True,
        swd_projections: PositiveInt = 128,
        swd_pixel: bool = True,
        swd_pixel_patches: PositiveInt = 8,
        detection: bool = True,
        detection_classifier: DetectionClassifier = "logistic",
        confidence_threshold: Fraction = 0.9,
    ) -> None:
        super().__init__(every_n_epochs)
        self.audit = audit
        self.audit_n = audit_n
        self.audit_n_synthetic = audit_n_synthetic
        self.cache_dir = cache_dir
        self.n_fake = {"val": n_fake_val, "test": n_fake_test}
        self.n_points = n_points
        self.chunk_size = chunk_size
        self.batch_size = batch_size
        self.options = ScoreOptions(
            kid=kid,
            isc=isc,
            prdc=prdc,
            authenticity=authenticity,
            mifid=mifid,
            kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size,
            isc_splits=isc_splits,
            pr_k=pr_k,
            dc_k=dc_k,
            n_train_reference=n_train_reference,
            mifid_eps=mifid_eps,
            swd=swd,
            swd_projections=swd_projections,
            swd_pixel=swd_pixel,
            swd_pixel_patches=swd_pixel_patches,
            detection=detection,
            detection_classifier=detection_classifier,
            confidence_threshold=confidence_threshold,
            seed=seed,
        )
        for stage, n in self.n_fake.items():
            if n is not None and n < self.options.min_fake():
                raise UserError(
                    f"metrics.n_fake_{stage}={n} is too few for the enabled scores: use at least "
                    f"{self.options.min_fake()} (precision/recall need pr_k + 1, IS needs isc_splits)."
                )
        self.extractor: Any = None
        self.scorer: Scorer | None = None

    # ------------------------------------------------------------------ extractor
    def _load_extractor(self, datamodule: GenerativeDataModule, device: torch.device) -> Any:
        raise NotImplementedError

    def _check_extractor_source(self) -> None:
        """Cheap checks that every process can run (file paths), before any training."""

    def prepare(self, datamodule: GenerativeDataModule, device: torch.device | str | None = None) -> None:
        """Checks the data against the options and readies the extractor; call before the Trainer starts.

        On the main process (global rank 0) this trains the domain extractor on first use, so DDP
        workers find it in the cache. Worker processes only check; they load it in ``setup``.
        """
        if datamodule.kind == "points":
            if getattr(datamodule, "modes", None) is None or getattr(datamodule, "sigma", None) is None:
                raise UserError(f"data={datamodule.name} holds points without known modes: use metrics=none.")
            return
        self._check_extractor_source()
        self._check_real_sizes(datamodule)
        if getattr(rank_zero_only, "rank", 0) == 0 and self.extractor is None:
            self.extractor = self._load_extractor(datamodule, torch.device(device or "cpu"))

    def _check_real_sizes(self, datamodule: GenerativeDataModule) -> None:
        need = self.options.min_real()
        for split in ("val", "test") + (("train",) if self.options.uses_train else ()):
            n = len(datamodule.split(split)[0])
            if n < need:
                raise UserError(
                    f"data={datamodule.name}: the {split} split has {n} images, fewer than the {need} the enabled "
                    "scores need (k-nearest neighbours with metrics.pr_k/dc_k): use more data, smaller k, or metrics.prdc=false."
                )

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datamodule = self._datamodule(trainer)
        if stage == "fit":
            self._check_monitors(trainer, datamodule)
        if datamodule.kind == "points":
            self.prepare(datamodule)
            return
        device = trainer.strategy.root_device
        if trainer.global_rank == 0 and self.extractor is None:
            self.prepare(datamodule, device)
        # Rank 0 has trained or loaded the extractor; the other ranks load it from the cache after this.
        trainer.strategy.barrier("genlab-metrics-extractor")
        if self.extractor is None:
            self._check_real_sizes(datamodule)
            self.extractor = self._load_extractor(datamodule, device)
        self.extractor.to(device)
        self._check_same_extractor(trainer)
        if self.scorer is None or self.scorer.extractor is not self.extractor:
            self.scorer = Scorer(self.extractor, self.options, self.cache_dir, self.batch_size)
            x = datamodule.split("train")[0]
            probe = self.scorer.features(torch.zeros(2, *x.shape[1:], dtype=torch.uint8, device=device))
            self._feature_dim, self._width = probe.features.shape[1], probe.rows().shape[1]

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.evaluate(trainer, pl_module, "test")
        if self.audit and trainer.datamodule.kind == "image":
            self.membership_audit(trainer, pl_module)

    def membership_audit(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, float]:
        """The membership-inference audit of the tested model (rank 0, broadcast to every rank)."""
        result: tuple[dict[str, float], dict[str, Any]] | None = None
        if trainer.global_rank == 0:
            synthetic = torch.cat(
                [
                    to_uint8(
                        sample_chunk(pl_module.sample, i, size, self.options.seed, pl_module.device)
                    ).cpu()
                    for i, size in enumerate(chunk_sizes(self.audit_n_synthetic, self.chunk_size))
                ]
            )
            result = membership_audit(
                trainer.datamodule,
                self.audit_n,
                self.options.seed,
                white_box=model_white_box(pl_module),
                synthetic=synthetic,
            )
        return self._publish(trainer, pl_module, result, "audit")

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> dict[str, float]:
        """Draws, gathers and scores the samples of ``stage``; logs the scores and records the protocol."""
        datamodule: GenerativeDataModule = trainer.datamodule
        points = datamodule.kind == "points"
        n = self.n_points if points else self.fake_count(stage, len(datamodule.split(stage)[0]))
        # The images serve the pixel SWD and the sharpness check of the verdict.
        keep_images = not points
        rows, images = self._draw_and_gather(
            trainer, pl_module, chunk_sizes(n, self.chunk_size), points, keep_images
        )
        result: tuple[dict[str, float], dict[str, Any]] | None = None
        if trainer.global_rank == 0:
            result = (
                self._score_points(rows, datamodule, stage, n)
                if points
                else self._score_images(rows, images, datamodule, stage, n)
            )
        return self._publish(trainer, pl_module, result, stage, prefix=f"{stage}/")

    def _draw_and_gather(
        self, trainer: pl.Trainer, pl_module: Any, sizes: list[int], points: bool, keep_images: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """The rows (features or points) of every chunk, drawn across ranks, in chunk order on every
        rank; with ``keep_images`` also the ``uint8`` images (for the pixel SWD), gathered alike."""
        world, rank = trainer.world_size, trainer.global_rank
        device = pl_module.device
        width = int(pl_module.point_dim) if points else self._width
        slots = math.ceil(len(sizes) / world)
        buffer = torch.zeros(slots, max(sizes), width, device=device)
        shape = tuple(pl_module.sample_shape)
        pixels = (
            torch.zeros(slots, max(sizes), *shape, dtype=torch.uint8, device=device) if keep_images else None
        )
        for slot, index in enumerate(range(rank, len(sizes), world)):
            samples = sample_chunk(pl_module.sample, index, sizes[index], self.options.seed, device)
            if points:
                buffer[slot, : sizes[index]] = samples.float()
                continue
            images = to_uint8(samples)
            buffer[slot, : sizes[index]] = self.scorer.features(images).rows()
            if pixels is not None:
                pixels[slot, : sizes[index]] = images
        return self._in_chunk_order(trainer, buffer, sizes), (
            None if pixels is None else self._in_chunk_order(trainer, pixels, sizes)
        )

    @staticmethod
    def _in_chunk_order(trainer: pl.Trainer, buffer: Tensor, sizes: list[int]) -> Tensor:
        world = trainer.world_size
        # Ranks with fewer chunks send zero padding; it is cut away here.
        gathered = trainer.strategy.all_gather(buffer) if world > 1 else buffer.unsqueeze(0)
        return torch.cat([gathered[i % world, i // world, :size] for i, size in enumerate(sizes)]).cpu()

    def _score_images(
        self, rows: Tensor, images: Tensor | None, datamodule: GenerativeDataModule, stage: str, n: int
    ) -> tuple[dict[str, float], dict[str, Any]]:
        # Each stage is scored against the split of its name: val at validation, test at test.
        features = FeatureSet.from_rows(rows, self._feature_dim)
        scores = self.scorer.score(features, datamodule, stage, images=images)
        protocol = self.scorer.protocol(datamodule, stage, n, scores, chunk_size=self.chunk_size)
        protocol["n_fake_rule"] = (
            f"metrics.n_fake_{stage}"
            if self.n_fake[stage]
            else f"as many as the real split, at most {N_FAKE_CAP[stage]}"
        )
        self._warn_once(log, stage, protocol["warnings"])
        return scores, protocol

    def fake_count(self, stage: str, n_real: int) -> int:
        """Samples scored at ``stage``: ``metrics.n_fake_<stage>``, or as many as the real split holds
        (at most :data:`N_FAKE_CAP`), never fewer than the enabled scores need."""
        if self.n_fake[stage]:
            return self.n_fake[stage]
        return max(self.options.min_fake(), default_n_fake(n_real, N_FAKE_CAP[stage]))

    def _score_points(
        self, rows: Tensor, datamodule: GenerativeDataModule, stage: str, n: int
    ) -> tuple[dict[str, float], dict[str, Any]]:
        real = datamodule.split(stage)[0].float().cpu()
        protocol = {
            "protocol": MODES_PROTOCOL,
            "dataset": datamodule.name,
            "n_fake": n,
            "n_modes": len(datamodule.modes),
            "sigma": datamodule.sigma,
            "hq_sigmas": HQ_SIGMAS,
            "seed": self.options.seed,
            "chunk_size": self.chunk_size,
            "wasserstein": f"exact W1 and W2 (POT emd2, Euclidean cost) vs the {len(real)} points of the {stage} split",
        }
        scores = mode_statistics(rows, datamodule.modes, datamodule.sigma)
        scores.update(w1=exact_wasserstein(rows, real, 1), w2=exact_wasserstein(rows, real, 2))
        return scores, protocol

    # ------------------------------------------------------------------ checks and records
    def _check_same_extractor(self, trainer: pl.Trainer) -> None:
        if trainer.world_size == 1:
            return
        code = torch.tensor(int(self.extractor.weights_sha256[:15], 16), device=trainer.strategy.root_device)
        codes = trainer.strategy.all_gather(code)
        if bool((codes != codes.flatten()[0]).any()):
            raise UserError(
                "the processes of this run hold different feature extractors: put paths.cache_dir on a filesystem "
                "that every node shares (or run python -m src.train_evaluator there first)."
            )

    def score_names(self, datamodule: GenerativeDataModule) -> list[str]:
        """The scores this callback logs for ``datamodule`` (without the ``val/``/``test/`` prefix)."""
        if datamodule.kind == "points":
            return [*MODE_SCORES, *POINT_DISTANCES]
        return Scorer.names(self.options, getattr(datamodule, "image_size", None))


class DomainMetrics(SampleQuality):
    """Scores in the feature space of the framework's own classifier (``metrics=domain``, the default).

    Args:
        extractor_arch: ``auto`` (LeNet-like up to 28 px, small ResNet above), ``lenet`` or ``resnet``.
        extractor_epochs, extractor_seed: its training; with the data they key its cache entry.
        **kwargs: the options of :class:`SampleQuality`.
    """

    def __init__(
        self,
        *,
        extractor_arch: ClassifierArch = "auto",
        extractor_epochs: PositiveInt = 10,
        extractor_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.extractor_arch = extractor_arch
        self.recipe = TrainingRecipe(epochs=extractor_epochs, seed=extractor_seed)

    def _load_extractor(self, datamodule: GenerativeDataModule, device: torch.device) -> Any:
        return load_extractor(datamodule, self.cache_dir, self.extractor_arch, self.recipe, device)


class InceptionMetrics(SampleQuality):
    """Scores in torch-fidelity's Inception-v3 feature space (``metrics=inception``).

    Args:
        inception_weights: path of ``weights-inception-2015-12-05-6726825d.pth``; ``None`` looks in
            the torch hub cache and downloads it there when possible.
        **kwargs: the options of :class:`SampleQuality`.
    """

    def __init__(self, *, inception_weights: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inception_weights = inception_weights

    def _check_extractor_source(self) -> None:
        locate_inception_weights(self.inception_weights)

    def _load_extractor(self, datamodule: GenerativeDataModule, device: torch.device) -> Any:
        return load_inception(self.inception_weights, device)
