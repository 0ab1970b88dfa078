"""Reproducible studies and benchmarks; each folder has one script and a README of measured results."""
