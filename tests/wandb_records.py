"""Reads the records of an offline W&B run file (``run-<id>.wandb``), for tests.

The file is a LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks, each with a
7-byte header (CRC32, length, type: 1 full, 2 first, 3 middle, 4 last) holding protobuf
``Record`` messages.

``run.finish()`` can return before W&B's service has flushed the last block of an offline run to
disk, so ``read_records`` waits for the run's ``exit`` record before it returns.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
FILE_HEADER = 7
CHUNK_HEADER = 7


def read_records(path: Path, timeout_s: float = 60.0) -> list[wandb_internal_pb2.Record]:
    """All records of a finished run, waiting up to ``timeout_s`` for the writer to flush them."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = _parse(Path(path).read_bytes(), path)
        if (records and records[-1].WhichOneof("record_type") == "exit") or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _parse(data: bytes, path: Path) -> list[wandb_internal_pb2.Record]:
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    chunks, pending, pos = [], b"", FILE_HEADER
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if length == 0 and kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        if pos + CHUNK_HEADER + length > len(data):  # a block the writer has not flushed yet
            break
        payload = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == 1:
            chunks.append(payload)
        elif kind == 2:
            pending = payload
        elif kind == 3:
            pending += payload
        elif kind == 4:
            chunks.append(pending + payload)
    records = []
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


def history_keys(records: list[wandb_internal_pb2.Record]) -> set[str]:
    keys: set[str] = set()
    for record in records:
        if record.WhichOneof("record_type") == "history":
            keys.update(item.key or "/".join(item.nested_key) for item in record.history.item)
    return keys


def run_record(records: list[wandb_internal_pb2.Record]) -> wandb_internal_pb2.RunRecord:
    return next(r.run for r in records if r.WhichOneof("record_type") == "run")
