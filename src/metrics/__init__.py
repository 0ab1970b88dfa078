"""Sample-quality metrics (``conf/metrics/``)."""
