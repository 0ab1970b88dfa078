"""Sample-quality metrics (``conf/metrics/``): FID, KID, IS, precision/recall, density/coverage,
memorization, and the toy 2-D mode statistics, each with its protocol.

Outside Lightning::

    from src.metrics import load_extractor, score_samples

    extractor = load_extractor(datamodule, cache_dir)           # train-or-load the domain classifier
    labels = extractor.classify(images_uint8).argmax(1)         # pseudo-labels
    scores, protocol = score_samples(images_uint8, datamodule, "test", extractor=extractor, cache_dir=cache_dir)
"""

from src.metrics.callback import DomainMetrics, InceptionMetrics, SampleQuality
from src.metrics.classifier_training import TrainingRecipe
from src.metrics.domain import DomainFeatureExtractor, load_extractor
from src.metrics.features import FeatureSet, RealFeatureCache, TorchmetricsFeature, extract_features
from src.metrics.inception import InceptionFeatureExtractor, load_inception
from src.metrics.scoring import ScoreOptions, Scorer, score_samples
from src.metrics.table_callback import TableMetrics, TableScorer

__all__ = [
    "DomainFeatureExtractor",
    "DomainMetrics",
    "FeatureSet",
    "InceptionFeatureExtractor",
    "InceptionMetrics",
    "RealFeatureCache",
    "SampleQuality",
    "ScoreOptions",
    "Scorer",
    "TableMetrics",
    "TableScorer",
    "TorchmetricsFeature",
    "TrainingRecipe",
    "extract_features",
    "load_extractor",
    "load_inception",
    "score_samples",
]
