"""CSV logger that keeps the rows of earlier segments when a job resumes in its own directory."""

from __future__ import annotations

import csv

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class AppendingExperimentWriter(ExperimentWriter):
    """Appends to an existing ``metrics.csv`` instead of deleting it.

    Lightning's writer removes the file it finds, so a requeued cluster job (``ckpt_path=auto``)
    would lose the history of every segment before the last. Rows logged after the checkpoint a
    job resumes from appear twice; the later rows are the resumed segment's.
    """

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
            # New keys make the parent rewrite the file under a widened header; known ones append.
            self.metrics_keys = next(csv.reader(handle), [])


class AppendingCSVLogger(CSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` whose ``metrics.csv`` survives a resume in place."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
