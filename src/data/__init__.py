"""Data modules (``conf/data/``): in-memory splits served as tensor batches."""

from src.data.adult import AdultDataModule
from src.data.base import GenerativeDataModule
from src.data.bundled_tables import BreastCancerDataModule, DoctorAusDataModule
from src.data.cifar10 import Cifar10DataModule
from src.data.image_folder import ImageFolderDataModule
from src.data.mnist import FashionMnistDataModule, MnistDataModule
from src.data.table import TableDataModule
from src.data.toy2d import Toy2DDataModule

__all__ = [
    "AdultDataModule",
    "BreastCancerDataModule",
    "Cifar10DataModule",
    "DoctorAusDataModule",
    "FashionMnistDataModule",
    "GenerativeDataModule",
    "ImageFolderDataModule",
    "MnistDataModule",
    "TableDataModule",
    "Toy2DDataModule",
]
