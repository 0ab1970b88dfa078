"""Generative models (``conf/model/``): LightningModules sharing the ``GenerativeModule`` surface."""

from src.models.base import GenerativeModule
from src.models.gan import GanModule
from src.models.vae import VaeModule

__all__ = ["GanModule", "GenerativeModule", "VaeModule"]
