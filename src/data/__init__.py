"""Data modules (``conf/data/``): in-memory splits served as tensor batches."""

from src.data.base import GenerativeDataModule
from src.data.cifar10 import Cifar10DataModule
from src.data.image_folder import ImageFolderDataModule
from src.data.mnist import FashionMnistDataModule, MnistDataModule
from src.data.toy2d import Toy2DDataModule

__all__ = [
    "Cifar10DataModule",
    "FashionMnistDataModule",
    "GenerativeDataModule",
    "ImageFolderDataModule",
    "MnistDataModule",
    "Toy2DDataModule",
]
