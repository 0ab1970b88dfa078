"""In-memory data modules: every dataset here is decoded once into tensors and served as batches.

Images are kept as ``uint8`` tensors of shape ``(N, C, H, W)`` in ``[0, 255]`` (``pixel_range``);
each model maps them to its own input range on the device. Splits are fixed by ``split_seed``,
independent of the training seed, so runs with different seeds are scored on the same images.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from src.data.loader import TensorBatchLoader
from src.data.subset import SubsetSpec, select_subset
from src.utils.errors import UserError
from src.utils.logging import get_logger
from src.utils.types import NonNegativeInt, PositiveInt

log = get_logger(__name__)

Source = Literal["auto", "files", "download", "bundled"]
SPLITS = ("train", "val", "test")


class GenerativeDataModule(pl.LightningDataModule):
    """Base class: holds the splits, serves loaders, describes the data to models and metrics.

    Subclasses implement :meth:`_load`, returning ``{"train"|"val"|"test": (x, y)}``.

    Attributes exposed to configs and models: ``image_size``, ``channels``, ``num_classes``
    (0 = unlabelled), ``pixel_range`` (the range of the served values), ``class_names``,
    ``data_source`` (where the data came from; recorded in ``metrics.json``).
    """

    name: ClassVar[str] = "data"
    kind: ClassVar[Literal["image", "points", "table"]] = "image"
    pixel_range: ClassVar[tuple[float, float]] = (0.0, 255.0)

    def __init__(
        self,
        *,
        data_dir: str,
        batch_size: PositiveInt = 128,
        eval_batch_size: PositiveInt | None = None,
        split_seed: int = 0,
        image_size: PositiveInt | None = None,
        channels: PositiveInt | None = None,
        num_classes: NonNegativeInt | None = None,
        on_device: bool = True,
        subset: SubsetSpec | dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.split_seed = split_seed
        self.image_size = image_size
        self.channels = channels
        self.num_classes = num_classes
        self.on_device = on_device
        self.class_names: list[str] = []
        self.data_source: str | None = None
        self._splits: dict[str, tuple[Tensor, Tensor]] | None = None
        self._fingerprints: dict[str, str] = {}
        # Set by the privacy engine (privacy=dp): training batches become Poisson samples.
        self.poisson_sample_rate: float | None = None
        self.subset = SubsetSpec.from_config(subset)
        if self.subset is not None and num_classes == 0:
            self._refuse_unlabelled_subset()

    # ----------------------------------------------------------------- subclass hooks
    def _load(self) -> dict[str, tuple[Tensor, Tensor]]:
        raise NotImplementedError

    # ----------------------------------------------------------------- lifecycle
    def resolve_spec(self) -> None:
        """Infers what the config leaves open (``None`` spec values) without heavy I/O."""
        if self.subset is not None and self.num_classes == 0:
            self._refuse_unlabelled_subset()

    def _refuse_unlabelled_subset(self) -> None:
        raise UserError(
            f"data.subset needs labelled data, but data={self.name} has no classes: remove data.subset "
            "(or use class sub-folders with data=image_folder)."
        )

    def setup(self, stage: str | None = None) -> None:
        if self._splits is None:
            splits = self._load()
            self._splits = {name: (self._conform(x), y.long()) for name, (x, y) in splits.items()}
            if self.subset is not None and "train" in self._splits:
                self._splits["train"] = self._take_subset(*self._splits["train"])
            for name in SPLITS:
                if name not in self._splits or len(self._splits[name][0]) == 0:
                    raise UserError(
                        f"data={self.name}: the {name} split is empty; give the dataset more samples or change the split fractions."
                    )
            sizes = ", ".join(f"{k}={len(v[0])}" for k, v in self._splits.items())
            log.info(f"data={self.name} ({self.data_source}): {sizes}")
        # Every call: the metrics may load the data before the Trainer exists (world size 1).
        self._check_batch_size()
        device = self._target_device()
        if device is not None and self._splits["train"][0].device != device:
            self._splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self._splits.items()}

    def _take_subset(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The ``data.subset`` part of the train split (see :mod:`src.data.subset`)."""
        num_classes = int(self.num_classes if self.num_classes is not None else len(self.class_names))
        if num_classes == 0:
            self._refuse_unlabelled_subset()
        want = self.subset.counts(y, num_classes, self.class_names)
        keep = select_subset(y, want, self.split_seed)
        unit = "rows" if self.kind == "table" else "images"
        log.info(
            f"data={self.name}: data.subset keeps {len(keep)} of {len(y)} training {unit} (per class: {want})"
        )
        return x[keep.to(x.device)], y[keep.to(y.device)]

    def train_class_counts(self) -> list[int]:
        """Images per class in the (possibly cut) train split."""
        y = self.split("train")[1]
        num_classes = int(self.num_classes if self.num_classes is not None else len(self.class_names))
        return torch.bincount(y.cpu(), minlength=num_classes).tolist()

    def _target_device(self) -> torch.device | None:
        # Keeping the splits on the GPU removes the host-to-device copy from every step.
        trainer = getattr(self, "trainer", None)
        if not self.on_device or trainer is None:
            return None
        device = trainer.strategy.root_device
        return device if device.type == "cuda" else None

    def _check_batch_size(self) -> None:
        n_train = len(self._splits["train"][0])
        world = self._world()[1]
        if n_train // world < self.batch_size:
            raise UserError(
                f"data={self.name}: the train split has {n_train} samples, fewer than data.batch_size={self.batch_size}"
                f" x {world} process(es): lower data.batch_size."
            )

    # ----------------------------------------------------------------- access
    @property
    def splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        if self._splits is None:
            self.setup()
        assert self._splits is not None
        return self._splits

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """The ``(x, y)`` tensors of one split (for metrics and reports)."""
        if name not in SPLITS:
            raise UserError(f"unknown split {name!r}: use one of {', '.join(SPLITS)}.")
        return self.splits[name]

    def fingerprint(self, split: str = "train") -> str:
        """sha256 of the split's content and the serving options; keys caches of features and extractors."""
        if split not in self._fingerprints:
            x, y = self.split(split)
            digest = hashlib.sha256()
            digest.update(f"{self.name}|{split}|{tuple(x.shape)}|{x.dtype}".encode())
            if split == "train" and self.subset is not None:
                # The content already differs; naming the subset keeps two subsets that happen to
                # pick the same images (a per-class count equal to a class's size) apart too.
                digest.update(f"|subset={self.subset.describe()}|seed={self.split_seed}".encode())
            digest.update(x.detach().cpu().contiguous().numpy().tobytes())
            digest.update(y.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprints[split] = digest.hexdigest()
        return self._fingerprints[split]

    def describe(self) -> dict[str, Any]:
        """The data's facts for ``metrics.json`` and export manifests (train counts once loaded)."""
        described: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "data_source": self.data_source,
            "split_seed": self.split_seed,
            "subset": self.subset.describe() if self.subset is not None else None,
        }
        if self._splits is not None:
            described["split_sizes"] = {name: len(x) for name, (x, _) in self._splits.items()}
            # Toy points carry mode indices as labels but count as unlabelled: no class counts for them.
            if self.kind in ("image", "table") and (self.num_classes or self.class_names):
                described["train_class_counts"] = self.train_class_counts()
        return described

    # ----------------------------------------------------------------- loaders
    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(self, split: str, train: bool) -> TensorBatchLoader:
        rank, world = self._world()
        trainer = getattr(self, "trainer", None)
        return TensorBatchLoader(
            self.split(split),
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train,
            seed=self.split_seed,
            rank=rank,
            world_size=world,
            epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else None,
            sample_rate=self.poisson_sample_rate if train else None,
        )

    def train_dataloader(self) -> TensorBatchLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", train=False)

    # ----------------------------------------------------------------- image conversion
    def _conform(self, x: Tensor) -> Tensor:
        """Brings native images to the configured ``channels`` and ``image_size`` (resize + centre crop)."""
        if self.kind != "image":
            return x
        if self.channels is not None and x.shape[1] != self.channels:
            x = convert_channels(x, self.channels)
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = resize_center_crop(x, self.image_size)
        return x.contiguous()


def convert_channels(x: Tensor, channels: int) -> Tensor:
    if channels == x.shape[1]:
        return x
    if x.shape[1] == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    if x.shape[1] == 3 and channels == 1:
        return TF.rgb_to_grayscale(x)
    raise UserError(f"cannot convert {x.shape[1]}-channel images to data.channels={channels}: use 1 or 3.")


def resize_center_crop(x: Tensor, size: int, chunk: int = 4096) -> Tensor:
    """Resizes the shorter side to ``size`` (antialiased) and centre-crops to ``size x size``."""
    out = []
    for part in x.split(chunk):
        part = TF.resize(part, [size], antialias=True)
        out.append(TF.center_crop(part, [size, size]))
    return torch.cat(out) if out else x


def split_by_fractions(
    x: Tensor, y: Tensor, fractions: Sequence[float], seed: int
) -> list[tuple[Tensor, Tensor]]:
    """Deterministic random split into ``len(fractions) + 1`` parts; the rest goes first."""
    n = len(x)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    sizes = [round(n * f) for f in fractions]
    rest = n - sum(sizes)
    bounds = [0, rest]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    return [(x[order[a:b]], y[order[a:b]]) for a, b in itertools.pairwise(bounds)]
