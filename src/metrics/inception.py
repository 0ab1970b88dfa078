"""torch-fidelity's Inception-v3 (``inception-v3-compat``), loaded from a file or the torch hub cache.

The weights (``weights-inception-2015-12-05-6726825d.pth``, converted from the TensorFlow graph the
published FIDs were computed with) are downloaded on first use by torch-fidelity. Offline they
must be put in place by hand: :func:`locate_inception_weights` says which file and where, before
any training starts.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

from src.metrics.cache import state_dict_sha256
from src.utils.errors import UserError
from src.utils.logging import get_logger

log = get_logger(__name__)

NAME = "inception-v3-compat"
WEIGHTS_FILE = URL_INCEPTION_V3.rsplit("/", 1)[-1]
FEATURES = ("2048", "logits_unbiased")
DOWNLOAD_TIMEOUT_S = 60


def hub_weights_path() -> Path:
    """Where torch hub (and so torch-fidelity) keeps the weights: ``<torch hub dir>/checkpoints/``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def locate_inception_weights(weights: str | None) -> Path:
    """The weights file to load: ``weights`` if given, else the hub cache, else a fresh download."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(
                f"metrics.inception_weights={weights} does not exist: give the path of {WEIGHTS_FILE} "
                f"(download it from {URL_INCEPTION_V3})."
            )
        return path
    cached = hub_weights_path()
    if cached.is_file():
        return cached
    log.info(f"downloading {WEIGHTS_FILE} to {cached.parent}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(URL_INCEPTION_V3, str(cached), progress=False)
    except Exception as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:120]
        raise UserError(
            f"metrics=inception needs the Inception-v3 weights {WEIGHTS_FILE}, which are neither cached nor "
            f"downloadable here ({reason}). Download {URL_INCEPTION_V3} on a machine with internet and put it in "
            f"{cached.parent}/, or pass metrics.inception_weights=<path of the file> "
            "(or use metrics=domain, which needs no download)."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return cached


class InceptionFeatureExtractor(FeatureExtractorInceptionV3):
    """``inception-v3-compat`` for 1- or 3-channel ``uint8`` images (grey is repeated to RGB).

    Provides the 2048-d pool features (FID, KID, PR, DC) and ``logits_unbiased`` (IS), as
    torch-fidelity uses them.
    """

    def __init__(self, weights_path: str | Path, features_list: tuple[str, ...] = FEATURES) -> None:
        try:
            # Initialising layers draws from the global generator: keep the caller's stream untouched.
            with torch.random.fork_rng(devices=[]):
                super().__init__(NAME, list(features_list), feature_extractor_weights_path=str(weights_path))
        except Exception as exc:
            raise UserError(
                f"{weights_path} is not a readable Inception-v3 state dict ({type(exc).__name__}): "
                f"use {WEIGHTS_FILE} from {URL_INCEPTION_V3}."
            ) from None
        self.weights_path = str(weights_path)
        self.weights_sha256 = state_dict_sha256(self.state_dict())

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dim() == 4 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return super().forward(x.to(self.fc.weight.device))

    @property
    def extractor_id(self) -> str:
        return NAME

    @property
    def has_class_logits(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "extractor": NAME,
            "extractor_sha256": self.weights_sha256,
            "extractor_weights": self.weights_path,
        }


def load_inception(
    weights: str | None = None, device: torch.device | str | None = None
) -> InceptionFeatureExtractor:
    """Inception-v3 from ``weights`` (a path), the torch hub cache, or a download; :class:`UserError` otherwise."""
    return InceptionFeatureExtractor(locate_inception_weights(weights)).to(device or "cpu")
