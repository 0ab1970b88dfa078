"""The domain feature extractor: a small classifier trained on the dataset itself.

Inception-v3 weights cannot be fetched offline, and ImageNet features say little about 28x28
digits. The default extractor is therefore a classifier the framework trains on the dataset's
train split (LeNet-like at <= 28 px, a small ResNet above); FID, KID, precision/recall,
density/coverage and authenticity use its penultimate features, the Inception Score its logits
(the "Frechet classifier distance" practice for MNIST-like data). Unlabelled data get the same
network trained to predict image rotations (Gidaris et al. 2018), a label-free task whose features
still separate shapes; the Inception Score is not defined for it.

Trained weights are cached under ``<cache_dir>/extractors/``, keyed by the train split's
fingerprint, the architecture, the task and the training recipe (seed included); the sha256 of
the weights goes with every score. Scores are comparable only under the same weights hash.

The extractor is a torch-fidelity ``FeatureExtractorBase`` registered as ``genlab-domain``:
``torch_fidelity.calculate_metrics(..., feature_extractor="genlab-domain",
feature_extractor_weights_path=<cached .pt file>)`` scores with it, and
``src.metrics.features.TorchmetricsFeature`` adapts it to torchmetrics' ``feature=`` argument.
The networks live in ``classifier_networks``, their training in ``classifier_training``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from src.data.base import GenerativeDataModule
from src.metrics.cache import content_key, load_entry, save_atomic, state_dict_sha256
from src.metrics.classifier_networks import ClassifierArch, build_network, resolve_arch, to_input
from src.metrics.classifier_training import Task, TrainingRecipe, classifier_accuracy, fit_classifier
from src.metrics.scoring import EXTRACTOR_ACCURACY_FLOOR
from src.utils.errors import UserError
from src.utils.logging import get_logger

log = get_logger(__name__)

NAME = "genlab-domain"
FEATURES = ("features", "logits")


# ---------------------------------------------------------------------------- the extractor
class DomainFeatureExtractor(FeatureExtractorBase):
    """A trained domain classifier as a torch-fidelity feature extractor.

    Input: ``uint8`` images ``(B, C, H, W)`` with the data's channels and size. Provides
    ``"features"`` (penultimate activations; FID, KID, PR, DC) and ``"logits"`` (IS, pseudo-labels).

    Build it with :func:`load_extractor` (train-or-load), :meth:`from_payload`, or, as torch-fidelity
    does, ``DomainFeatureExtractor("genlab-domain", ["features"], feature_extractor_weights_path=<file>)``.
    ``meta`` describes it (architecture, task, dataset, accuracy, weights ``sha256``).
    """

    def __init__(
        self,
        name: str = NAME,
        features_list: tuple[str, ...] | list[str] = FEATURES,
        feature_extractor_weights_path: str | None = None,
        payload: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, list(features_list))
        if payload is None:
            vassert(
                feature_extractor_weights_path is not None,
                f"{NAME} needs feature_extractor_weights_path: a file written by src.metrics.load_extractor "
                "(<cache_dir>/extractors/*.pt)",
            )
            payload = load_entry(Path(feature_extractor_weights_path))
            vassert(payload is not None, f"cannot read {feature_extractor_weights_path}")
        self.meta: dict[str, Any] = dict(payload["meta"])
        # Initialising layers draws from the global generator: keep the caller's stream untouched.
        with torch.random.fork_rng(devices=[]):
            self.network = build_network(
                self.meta["arch"], self.meta["channels"], self.meta["image_size"], self.meta["num_outputs"]
            )
        self.network.load_state_dict(payload["state_dict"])
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_payload(
        cls, payload: dict[str, Any], features_list: tuple[str, ...] = FEATURES
    ) -> DomainFeatureExtractor:
        return cls(NAME, features_list, payload=payload)

    def payload(self) -> dict[str, Any]:
        """What the cache file holds: ``{"meta", "state_dict"}`` (CPU tensors)."""
        state = {k: v.detach().cpu() for k, v in self.network.state_dict().items()}
        return {"meta": dict(self.meta), "state_dict": state}

    # -- torch-fidelity's FeatureExtractorBase interface
    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits" if metric == "isc" else "features"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting images as a torch.uint8 tensor")
        device = next(self.network.parameters()).device
        features, logits = self.network(to_input(x.to(device)))
        out = {"features": features, "logits": logits}
        return tuple(out[name] for name in self.features_list)

    # -- for users of the classifier itself
    @property
    def weights_sha256(self) -> str:
        return self.meta["sha256"]

    @property
    def extractor_id(self) -> str:
        return f"domain-{self.meta['arch']}-{self.meta['task']}"

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names") or [])

    @property
    def has_class_logits(self) -> bool:
        """Logits over the data's classes (not rotations): the Inception Score and pseudo-labels apply."""
        return self.meta["task"] == "classes"

    @torch.no_grad()
    def classify(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """Logits ``(N, num_outputs)`` for ``uint8`` images ``(N, C, H, W)``; ``argmax`` gives pseudo-labels."""
        device = next(self.network.parameters()).device
        out = [
            self.network(to_input(chunk.to(device)))[1].float().cpu() for chunk in images.split(batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0, self.meta["num_outputs"])

    def describe(self) -> dict[str, Any]:
        """The protocol entries every score carries."""
        return {
            "extractor": self.extractor_id,
            "extractor_sha256": self.weights_sha256,
            "extractor_key": self.meta["key"],
            "extractor_test_accuracy": self.meta.get("test_accuracy"),
        }


if NAME not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(NAME, DomainFeatureExtractor)


# ---------------------------------------------------------------------------- train or load
def data_classes(datamodule: GenerativeDataModule) -> int:
    """Classes of the data (a data module built outside Hydra may leave ``num_classes`` unset)."""
    return int(datamodule.num_classes if datamodule.num_classes is not None else len(datamodule.class_names))


def data_task(datamodule: GenerativeDataModule) -> Task:
    """What the extractor learns: the classes, or image rotations when the data have fewer than 2."""
    return "classes" if data_classes(datamodule) >= 2 else "rotation"


def extractor_key(datamodule: GenerativeDataModule, arch: str, recipe: TrainingRecipe) -> str:
    x, _ = datamodule.split("train")
    return content_key(
        kind="domain-extractor",
        train_fingerprint=datamodule.fingerprint("train"),
        arch=arch,
        task=data_task(datamodule),
        shape=list(x.shape[1:]),
        recipe=asdict(recipe),
    )


def extractor_path(cache_dir: str | Path, datamodule: GenerativeDataModule, arch: str, key: str) -> Path:
    return Path(cache_dir).expanduser() / "extractors" / f"{datamodule.name}-{arch}-{key[:16]}.pt"


def load_extractor(
    datamodule: GenerativeDataModule,
    cache_dir: str | Path,
    arch: ClassifierArch = "auto",
    recipe: TrainingRecipe | None = None,
    device: torch.device | str | None = None,
    retrain: bool = False,
) -> DomainFeatureExtractor:
    """The domain extractor of ``datamodule``: loaded from the cache, or trained and cached first.

    Training uses its own random streams (the caller's RNG state is left as it was), so a run
    behaves the same whether the extractor came from the cache or not.
    """
    if datamodule.kind != "image":
        raise UserError(
            f"data={datamodule.name} holds points, not images: the domain extractor applies to images."
        )
    recipe = recipe or TrainingRecipe()
    device = torch.device(device or "cpu")
    x, _ = datamodule.split("train")
    arch_name = resolve_arch(arch, int(x.shape[-1]))
    key = extractor_key(datamodule, arch_name, recipe)
    path = extractor_path(cache_dir, datamodule, arch_name, key)
    payload = None if retrain else load_entry(path)
    if payload is not None and payload.get("meta", {}).get("sha256") != state_dict_sha256(
        payload["state_dict"]
    ):
        log.warning(f"{path} does not match its recorded weights hash; retraining the domain extractor")
        payload = None
    if payload is None:
        log.info(
            f"training the domain feature extractor for {datamodule.name} ({arch_name}, {data_task(datamodule)}, "
            f"{recipe.epochs} epochs, seed {recipe.seed}) on {len(x)} images (cached at {path})"
        )
        payload = train_extractor(datamodule, arch_name, recipe, device)
        payload["meta"]["key"] = key
        save_atomic(payload, path)
        meta = payload["meta"]
        weak = meta["test_accuracy"] < EXTRACTOR_ACCURACY_FLOOR
        (log.warning if weak else log.info)(
            f"domain feature extractor for {datamodule.name}: test accuracy {meta['test_accuracy']:.2%} "
            f"(val {meta['val_accuracy']:.2%}, chance {1 / meta['num_outputs']:.0%}), {meta['train_seconds']:.0f} s, "
            f"weights sha256 {meta['sha256'][:12]}"
            + (
                f"; below the {EXTRACTOR_ACCURACY_FLOOR:.0%} floor: scores in its feature space say little "
                "(more training images, metrics.extractor_epochs, or metrics=inception)"
                if weak
                else ""
            )
        )
    extractor = DomainFeatureExtractor.from_payload(payload)
    extractor.meta["path"] = str(path)
    return extractor.to(device)


def train_extractor(
    datamodule: GenerativeDataModule, arch: str, recipe: TrainingRecipe, device: torch.device
) -> dict[str, Any]:
    """Trains the classifier on the train split; returns the cache payload with val/test accuracy."""
    task = data_task(datamodule)
    x, y = datamodule.split("train")
    channels, size = int(x.shape[1]), int(x.shape[-1])
    num_outputs = data_classes(datamodule) if task == "classes" else 4
    started = time.perf_counter()
    network = fit_classifier(x, y, arch, num_outputs, recipe, device, task)
    accuracy = {
        split: classifier_accuracy(network, *datamodule.split(split), device, recipe.seed, task)
        for split in ("val", "test")
    }
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    meta = {
        "arch": arch,
        "task": task,
        "channels": channels,
        "image_size": size,
        "num_outputs": num_outputs,
        "class_names": list(datamodule.class_names) if task == "classes" else ["0", "90", "180", "270"],
        "dataset": datamodule.name,
        "data_source": datamodule.data_source,
        "train_fingerprint": datamodule.fingerprint("train"),
        "n_train": len(x),
        "recipe": asdict(recipe),
        "val_accuracy": accuracy["val"],
        "test_accuracy": accuracy["test"],
        "train_seconds": time.perf_counter() - started,
        "sha256": state_dict_sha256(state),
    }
    return {"meta": meta, "state_dict": state}
