"""Shared plumbing for the entry points: errors, config checks, run records, logging."""
