"""Table models (``model=tvae | ctgan | gaussian_copula``) on the raw row layout of ``src.utils.tables``."""

from src.models.tabular.base import TABLE_KEY, TableModule
from src.models.tabular.copula import GaussianCopulaModule
from src.models.tabular.ctgan import CtganModule
from src.models.tabular.transformer import DataTransformer, Span
from src.models.tabular.tvae import TvaeModule

__all__ = [
    "TABLE_KEY",
    "CtganModule",
    "DataTransformer",
    "GaussianCopulaModule",
    "Span",
    "TableModule",
    "TvaeModule",
]
