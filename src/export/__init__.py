"""Synthetic datasets (``conf/export/``): export, manifest, verification, W&B artifacts."""
