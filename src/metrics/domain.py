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
:func:`src.metrics.features.torchmetrics_feature` adapts it to torchmetrics' ``feature=`` argument.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from src.data.base import GenerativeDataModule
from src.metrics.cache import content_key, load_entry, save_atomic, state_dict_sha256
from src.utils.errors import UserError
from src.utils.logging import get_logger

log = get_logger(__name__)

NAME = "genlab-domain"
FEATURES = ("features", "logits")
# Bump when the networks, the preprocessing or the training loop change: old cache entries then
# stop matching, and scores computed with them stop being comparable (their hash differs anyway).
RECIPE_VERSION = 1

Arch = Literal["auto", "lenet", "resnet"]
Task = Literal["classes", "rotation"]


# ---------------------------------------------------------------------------- networks
class LeNet(nn.Module):
    """LeNet-5's shape with strided 5x5 convolutions instead of pooling (pooling costs more than
    the convolutions on CPUs), batch norm, and a 128-unit penultimate layer (the features)."""

    def __init__(
        self, channels: int, image_size: int, num_outputs: int, width: int = 32, feature_dim: int = 128
    ):
        super().__init__()
        side = math.ceil(math.ceil(image_size / 2) / 2)
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 5, stride=2, padding=2),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 5, stride=2, padding=2),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(2 * width * side * side, feature_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_outputs)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x)
        return features, self.head(self.dropout(features))


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x), inplace=True)


class SmallResNet(nn.Module):
    """Three residual stages (16, 32, 64 channels; ResNet-20's widths, one block each), global
    average pooling and a 128-unit layer (the features, as wide as LeNet's). The stem downsamples
    images of 64 px and more, so 64 px costs about what 32 px does."""

    def __init__(
        self,
        channels: int,
        image_size: int,
        num_outputs: int,
        widths: tuple[int, ...] = (16, 32, 64),
        feature_dim: int = 128,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, widths[0], 3, stride=2 if image_size >= 64 else 1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages, c_in = [], widths[0]
        for i, c_out in enumerate(widths):
            stages.append(_Block(c_in, c_out, stride=1 if i == 0 else 2))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.features = nn.Sequential(nn.Linear(widths[-1], feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_outputs)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.features(self.stages(self.stem(x)).mean(dim=(2, 3)))
        return features, self.head(self.dropout(features))


def resolve_arch(arch: Arch, image_size: int) -> Literal["lenet", "resnet"]:
    """``auto``: LeNet-like up to 28 px, the small ResNet above."""
    if arch != "auto":
        return arch
    return "lenet" if image_size <= 28 else "resnet"


def build_network(arch: str, channels: int, image_size: int, num_outputs: int) -> nn.Module:
    if arch == "lenet":
        return LeNet(channels, image_size, num_outputs)
    if arch == "resnet":
        return SmallResNet(channels, image_size, num_outputs)
    raise ValueError(f"unknown domain extractor architecture {arch!r}")


def _to_input(x: Tensor) -> Tensor:
    """uint8 ``[0, 255]`` -> float ``[-1, 1]``."""
    return x.float() / 127.5 - 1.0


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
        features, logits = self.network(_to_input(x.to(device)))
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
            self.network(_to_input(chunk.to(device)))[1].float().cpu() for chunk in images.split(batch_size)
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


# ---------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainingRecipe:
    """How the classifier is trained; every field is part of the cache key."""

    epochs: int = 10
    seed: int = 0
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    max_shift: int = 2  # random translations of up to this many pixels (per 28 px)
    version: int = RECIPE_VERSION


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
    arch: Arch = "auto",
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
        log.info(
            f"domain feature extractor for {datamodule.name}: test accuracy {meta['test_accuracy']:.2%} "
            f"(val {meta['val_accuracy']:.2%}), {meta['train_seconds']:.0f} s, weights sha256 {meta['sha256'][:12]}"
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


def fit_classifier(
    x: Tensor,
    y: Tensor,
    arch: str,
    num_outputs: int,
    recipe: TrainingRecipe,
    device: torch.device,
    task: Task = "classes",
) -> nn.Module:
    """Trains the domain network on ``uint8`` images ``x`` with labels ``y`` (or on their rotations).

    The same network and recipe serve the feature extractor and the Classification Accuracy
    Score of exported datasets. Training uses its own random streams: the caller's RNG state is
    left as it was.
    """
    channels, size = int(x.shape[1]), int(x.shape[-1])
    shift = max(1, round(recipe.max_shift * size / 28)) if recipe.max_shift else 0
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(recipe.seed)
        generator = torch.Generator().manual_seed(recipe.seed)
        network = build_network(arch, channels, size, num_outputs).to(device)
        batch = min(recipe.batch_size, len(x))
        steps_per_epoch = max(1, len(x) // batch)
        optimizer = torch.optim.AdamW(network.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=recipe.epochs * steps_per_epoch
        )
        network.train()
        for _ in range(recipe.epochs):
            order = torch.randperm(len(x), generator=generator)
            for step in range(steps_per_epoch):
                idx = order[step * batch : (step + 1) * batch]
                images = random_shift(x[idx].cpu(), shift, generator)
                images, targets = _task_batch(images, y[idx].cpu(), task, generator)
                _, logits = network(_to_input(images.to(device)))
                loss = F.cross_entropy(logits, targets.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
        network.eval()
    return network


def random_shift(x: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Translates each image by up to ``shift`` pixels (zero padding): the classic MNIST augmentation."""
    if shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    out = torch.empty_like(x)
    # One slice per offset: (2 * shift + 1)^2 copies instead of a gather per pixel.
    for a in range(2 * shift + 1):
        for b in range(2 * shift + 1):
            mask = (dy == a) & (dx == b)
            if mask.any():
                out[mask] = padded[mask, :, a : a + h, b : b + w]
    return out


def rotate(x: Tensor, quarter_turns: Tensor) -> Tensor:
    out = torch.empty_like(x)
    for k in range(4):
        mask = quarter_turns == k
        if mask.any():
            out[mask] = torch.rot90(x[mask], k, dims=(2, 3))
    return out


def _task_batch(x: Tensor, y: Tensor, task: Task, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    if task == "classes":
        return x, y
    turns = torch.randint(0, 4, (len(x),), generator=generator)
    return rotate(x, turns), turns


@torch.no_grad()
def classifier_accuracy(
    network: nn.Module, x: Tensor, y: Tensor, device: torch.device, seed: int = 0, task: Task = "classes"
) -> float:
    """Top-1 accuracy of ``network`` on ``uint8`` images ``x`` (labels ``y``, or rotations)."""
    generator = torch.Generator().manual_seed(seed)
    correct = 0
    for xb, yb in zip(x.cpu().split(1000), y.cpu().split(1000)):
        xb, yb = _task_batch(xb, yb, task, generator)
        correct += int((network(_to_input(xb.to(device)))[1].argmax(1).cpu() == yb).sum())
    return correct / max(1, len(x))
