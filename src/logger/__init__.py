"""Experiment loggers (``conf/logger/``)."""

from src.logger.wandb import finish_wandb_runs, wandb_logger

__all__ = ["finish_wandb_runs", "wandb_logger"]
