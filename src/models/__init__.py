"""Generative models (``conf/model/``): LightningModules sharing the ``GenerativeModule`` surface."""

from src.models.base import GenerativeModule
from src.models.gan import GanModule
from src.models.tabular import CtganModule, GaussianCopulaModule, TableModule, TvaeModule
from src.models.vae import VaeModule

__all__ = [
    "CtganModule",
    "GanModule",
    "GaussianCopulaModule",
    "GenerativeModule",
    "TableModule",
    "TvaeModule",
    "VaeModule",
]
