"""Features of image sets: batched extraction, the real-split cache, and the torchmetrics adapter.

Extractors follow torch-fidelity's ``FeatureExtractorBase`` convention: ``uint8`` images in, a tuple
of named features out, and ``get_default_feature_layer_for_metric`` naming the layer each metric
reads ("fid" for the distance-based scores, "isc" for the Inception Score).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from src.data.base import GenerativeDataModule
from src.metrics.cache import content_key, load_entry, save_atomic
from src.utils.logging import get_logger

log = get_logger(__name__)


@dataclass
class FeatureSet:
    """Per-sample features of one image set: ``features`` ``(N, D)`` for the distance-based scores
    (FID, KID, PR, DC, authenticity) and ``logits`` ``(N, K)`` for the Inception Score."""

    features: Tensor
    logits: Tensor | None = None

    def __len__(self) -> int:
        return len(self.features)

    def rows(self) -> Tensor:
        """``features`` and ``logits`` side by side: one tensor to gather across processes."""
        return self.features if self.logits is None else torch.cat([self.features, self.logits], dim=1)

    @classmethod
    def from_rows(cls, rows: Tensor, feature_dim: int) -> FeatureSet:
        logits = rows[:, feature_dim:] if rows.shape[1] > feature_dim else None
        return cls(rows[:, :feature_dim], logits)


def metric_layers(extractor: FeatureExtractorBase) -> tuple[str, str]:
    """The extractor's layers for the distance-based scores and for the Inception Score."""
    return (
        extractor.get_default_feature_layer_for_metric("fid"),
        extractor.get_default_feature_layer_for_metric("isc"),
    )


@torch.no_grad()
def extract_features(
    extractor: FeatureExtractorBase, images: Tensor, batch_size: int = 500, to_cpu: bool = True
) -> FeatureSet:
    """Features of ``uint8`` images ``(N, C, H, W)`` in batches (the extractor stays on its device)."""
    feature_layer, logit_layer = metric_layers(extractor)
    features, logits = [], []
    for chunk in images.split(batch_size):
        out = extractor.convert_features_tuple_to_dict(extractor(chunk))
        features.append(out[feature_layer].float())
        if logit_layer in out:
            logits.append(out[logit_layer].float())
    result = FeatureSet(torch.cat(features), torch.cat(logits) if logits else None)
    if to_cpu:
        result = FeatureSet(result.features.cpu(), None if result.logits is None else result.logits.cpu())
    return result


def subset_indices(n: int, limit: int | None, seed: int) -> Tensor:
    """A fixed random subset of ``range(n)`` of size ``min(n, limit)`` (all of it, in order, without a limit)."""
    if limit is None or limit >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit]


class RealFeatureCache:
    """Features of real splits, computed once per extractor and split content.

    Kept in memory for the life of the object (across epochs) and on disk under
    ``<cache_dir>/features/`` (across runs), keyed by the extractor's weights hash, its layers, the
    split's fingerprint and the subset taken. ``cache_dir=None`` keeps them in memory only.
    """

    def __init__(self, cache_dir: str | Path | None) -> None:
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self._memory: dict[str, FeatureSet] = {}

    def get(
        self,
        extractor: Any,
        datamodule: GenerativeDataModule,
        split: str,
        batch_size: int = 500,
        limit: int | None = None,
        subset_seed: int = 0,
    ) -> FeatureSet:
        key = content_key(
            kind="real-features",
            extractor_sha256=extractor.weights_sha256,
            layers=list(metric_layers(extractor)),
            split=split,
            fingerprint=datamodule.fingerprint(split),
            limit=limit,
            subset_seed=subset_seed if limit is not None else None,
        )
        if key in self._memory:
            return self._memory[key]
        path = None
        if self.cache_dir is not None:
            path = self.cache_dir / "features" / f"{datamodule.name}-{split}-{key[:16]}.pt"
        payload = load_entry(path) if path is not None else None
        if payload is not None:
            features = FeatureSet(payload["features"], payload.get("logits"))
        else:
            images = datamodule.split(split)[0]
            images = images[subset_indices(len(images), limit, subset_seed).to(images.device)]
            log.info(
                f"computing {extractor.extractor_id} features of {len(images)} {datamodule.name} {split} images"
            )
            features = extract_features(extractor, images, batch_size)
            if path is not None:
                save_atomic({"features": features.features, "logits": features.logits}, path)
        self._memory[key] = features
        return features


class TorchmetricsFeature(nn.Module):
    """One layer of a torch-fidelity extractor as the single-tensor module torchmetrics expects.

    ``FrechetInceptionDistance(feature=TorchmetricsFeature(extractor))`` (likewise KID and MiFID)
    then scores in the same feature space as this framework; ``num_features`` spares torchmetrics
    its probe with a 299x299 dummy image.
    """

    def __init__(self, extractor: FeatureExtractorBase, layer: str | None = None) -> None:
        super().__init__()
        self.extractor = extractor
        self.layer = layer or metric_layers(extractor)[0]
        meta = getattr(extractor, "meta", {})
        probe = torch.zeros(
            1, meta.get("channels", 3), meta.get("image_size", 32), meta.get("image_size", 32)
        )
        with torch.no_grad():
            self.num_features = int(self(probe.to(torch.uint8)).shape[-1])

    def train(self, mode: bool = True) -> TorchmetricsFeature:
        # A metric inside a LightningModule follows its train/eval switches; the extractor's batch
        # norm and dropout must not.
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        return self.extractor.convert_features_tuple_to_dict(self.extractor(images))[self.layer].float()
