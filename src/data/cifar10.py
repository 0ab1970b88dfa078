"""CIFAR-10 from its python pickle batches (``cifar-10-batches-py``)."""

from __future__ import annotations

import pickle

import numpy as np
import torch
from torch import Tensor
from torchvision.datasets.utils import download_and_extract_archive

from src.data.base import split_by_fractions
from src.data.downloadable import DownloadableDataModule
from src.utils.types import Fraction

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"


class Cifar10DataModule(DownloadableDataModule):
    """CIFAR-10: 32x32 colour images, 10 classes.

    Files: ``<data_dir>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``.
    Splits: the official 10,000 test images; ``val_fraction`` of the 50,000 training images.
    """

    name = "cifar10"
    folder = "cifar-10-batches-py"
    expected_files = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")

    def __init__(self, *, val_fraction: Fraction = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.val_fraction = val_fraction

    def _download(self) -> None:
        download_and_extract_archive(
            URL, download_root=str(self.data_dir), filename="cifar-10-python.tar.gz", md5=MD5
        )

    def _unpickle(self, name: str) -> dict:
        path = self.root / name
        try:
            with open(path, "rb") as handle:
                return pickle.load(handle, encoding="latin1")
        except Exception as exc:
            raise self._unreadable(path, exc) from None

    def _batches(self, names: list[str]) -> tuple[Tensor, Tensor]:
        images, labels = [], []
        for name in names:
            entry = self._unpickle(name)
            try:
                data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                target = np.asarray(entry["labels"], dtype=np.int64)
                if len(data) != len(target):
                    raise ValueError(f"{len(target)} labels for {len(data)} images")
            except Exception as exc:
                raise self._unreadable(self.root / name, exc) from None
            images.append(torch.from_numpy(data))
            labels.append(torch.from_numpy(target))
        return torch.cat(images), torch.cat(labels)

    def _load_files(self) -> dict[str, tuple[Tensor, Tensor]]:
        meta = self._unpickle("batches.meta")
        self.class_names = [str(name) for name in meta.get("label_names", [])]
        x, y = self._batches([f"data_batch_{i}" for i in range(1, 6)])
        train, val = split_by_fractions(x, y, [self.val_fraction], self.split_seed)
        return {"train": train, "val": val, "test": self._batches(["test_batch"])}
