"""Generative models (``conf/model/``): LightningModules sharing the ``GenerativeModule`` surface."""

from src.models.base import GenerativeModule
from src.models.vae import VaeModule

__all__ = ["GenerativeModule", "VaeModule"]
