"""Experiment loggers (``conf/logger/``)."""

from src.logger.csv_logger import AppendingCSVLogger
from src.logger.wandb import finish_wandb_runs, wandb_logger

__all__ = ["AppendingCSVLogger", "finish_wandb_runs", "wandb_logger"]
