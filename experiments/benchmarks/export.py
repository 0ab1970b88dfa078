"""Export throughput: images per second from the model to a verified dataset directory.

Measures `export_dataset` (generation, uint8 conversion, parallel PNG encoding, metadata.csv,
data.npz, manifest and SHA256SUMS, atomic rename) for 28x28 MNIST-shaped images, with the same
VAE `src.train model=vae data=mnist` builds (weights do not change the cost), in two places:

* **memory** (``/dev/shm``, a tmpfs, where the machine has one): the pipeline's own cost, what
  the target is judged on;
* **disk** (a hidden folder in the working directory, where ``outputs/`` goes): what a user's export
  gets on this machine's disk, next to the rate at which a bare loop creates as many files of the
  same size there (one ``open``/``write``/``close`` each, nothing else): the disk's own bound.

Each is the median of ``repeats`` exports (all runs kept).

    python -m experiments.benchmarks.export --n 20000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from src.export.exporter import ExportOptions, export_dataset
from src.export.png import write_new_file
from src.models import VaeModule

MEMORY_FS = Path("/dev/shm")


def run(
    n: int = 20_000,
    batch_size: int = 1000,
    workers: int = 2,
    formats: tuple[str, ...] = ("png", "both"),
    repeats: int = 3,
    disk_dir: str | Path = ".",
) -> dict:
    torch.manual_seed(0)
    model = VaeModule(
        image_size=28,
        channels=1,
        num_classes=10,
        conditional=True,
        latent_dim=16,
        width=32,
        optimizer=torch.optim.Adam,
    ).eval()
    results: dict = {
        "n": n,
        "batch_size": batch_size,
        "workers": workers,
        "image_size": 28,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "memory_dir": str(MEMORY_FS) if MEMORY_FS.is_dir() else None,
    }
    places = {"": MEMORY_FS, "disk_": Path(disk_dir)} if MEMORY_FS.is_dir() else {"disk_": Path(disk_dir)}
    for prefix, place in places.items():
        for fmt in formats if prefix == "" else ("png",):
            rates = [_export_rate(model, place, fmt, n, batch_size, workers) for _ in range(repeats)]
            results[f"{prefix}{fmt}_images_per_s"] = statistics.median(rates)
            results[f"{prefix}{fmt}_images_per_s_runs"] = [round(rate) for rate in rates]
    rates = [_bare_file_rate(Path(disk_dir), n) for _ in range(repeats)]
    results["disk_bare_file_writes_per_s"] = statistics.median(rates)
    results["disk_bare_file_writes_per_s_runs"] = [round(rate) for rate in rates]
    return results


def _export_rate(model: VaeModule, place: Path, fmt: str, n: int, batch_size: int, workers: int) -> float:
    """Images per second of one export of ``n`` images into a fresh folder under ``place``."""
    root = Path(tempfile.mkdtemp(dir=place, prefix=".export-bench-"))
    try:
        options = ExportOptions(
            n=n, out_dir=str(root / fmt), batch_size=batch_size, workers=workers, format=fmt, score=False
        )
        started = time.perf_counter()
        export_dataset(model, [str(i) for i in range(10)], None, options, provenance={})
        return n / (time.perf_counter() - started)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _bare_file_rate(place: Path, n: int, size: int = 750) -> float:
    """Files per second a bare loop creates under ``place``: ``n`` files of ``size`` bytes (about
    a 28x28 PNG), written as the export writes each PNG, in ten folders like its class folders."""
    root = Path(tempfile.mkdtemp(dir=place, prefix=".export-bench-"))
    try:
        folders = [str(root / str(c)) for c in range(10)]
        for folder in folders:
            os.mkdir(folder)
        data = os.urandom(size)
        started = time.perf_counter()
        for i in range(n):
            write_new_file(os.path.join(folders[i % 10], f"{i:06d}.png"), data)
        return n / (time.perf_counter() - started)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(args.n, args.batch_size, args.workers, repeats=args.repeats), indent=2))


if __name__ == "__main__":
    main()
