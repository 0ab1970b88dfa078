"""Export throughput: images per second from the model to a verified dataset directory on disk.

Measures `export_dataset` (generation, uint8 conversion, parallel PNG encoding, metadata.csv,
data.npz, manifest and SHA256SUMS, atomic rename) for 28x28 MNIST-shaped images, with the same
VAE `src.train model=vae data=mnist` builds (weights do not change the cost).

    python -m experiments.benchmarks.export --n 20000
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from src.export.exporter import ExportOptions, export_dataset
from src.models import VaeModule


def run(
    n: int = 20_000, batch_size: int = 1000, workers: int = 2, formats: tuple[str, ...] = ("png", "both")
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
    results = {
        "n": n,
        "batch_size": batch_size,
        "workers": workers,
        "image_size": 28,
        "threads": torch.get_num_threads(),
    }
    root = Path(tempfile.mkdtemp())
    try:
        for fmt in formats:
            out = root / fmt
            options = ExportOptions(
                n=n, out_dir=str(out), batch_size=batch_size, workers=workers, format=fmt, score=False
            )
            started = time.perf_counter()
            export_dataset(model, [str(i) for i in range(10)], None, options, provenance={})
            seconds = time.perf_counter() - started
            results[f"{fmt}_seconds"] = seconds
            results[f"{fmt}_images_per_s"] = n / seconds
            shutil.rmtree(out)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(run(args.n, args.batch_size, args.workers), indent=2))


if __name__ == "__main__":
    main()
