"""PNG encoding and writing, with the checksum of the bytes written."""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
from PIL import Image

# zlib level 1: PNG stays lossless; higher levels cost several times the time for a few percent of size.
COMPRESS_LEVEL = 1


def encode_png(image: np.ndarray) -> bytes:
    """``(H, W, C)`` uint8 with C in {1, 3} -> PNG bytes."""
    array = image[:, :, 0] if image.shape[2] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=COMPRESS_LEVEL)
    return buffer.getvalue()


def write_pngs(root: str, relpaths: list[str], images: np.ndarray) -> list[tuple[str, str]]:
    """Writes ``images[i]`` to ``root/relpaths[i]``; returns ``(relpath, sha256)`` for each.

    Hashing the bytes as they are written spares re-reading every file for ``SHA256SUMS``.
    """
    out = []
    for relpath, image in zip(relpaths, images):
        data = encode_png(image)
        write_new_file(os.path.join(root, relpath), data)
        out.append((relpath, hashlib.sha256(data).hexdigest()))
    return out


def write_new_file(path: str, data: bytes) -> None:
    """One unbuffered write to a file that must not exist yet (the export's temporary directory).

    A few hundred bytes per file: Python's buffered file object costs more than the write itself.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
