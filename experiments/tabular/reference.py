"""One run of a reference implementation (the ``ctgan`` package's CTGAN or TVAE) on a bundled table.

    python -m experiments.tabular.reference --table doctor_aus --model ctgan --seed 0 --epochs 100 \
        --batch-size 500 --out result.json

Run by ``experiments/tabular/run.py`` with the package on ``PYTHONPATH`` (it is installed into the
benchmark's own folder, ``experiments/tabular/.bench``, never into the project's environment: the
package is under the Business Source License, which permits this local benchmark). The table, its
splits and the scores are the framework's: the same training rows as ``python -m src.train
data=<table>``, and the generated rows scored against the real test split by the same
:class:`src.metrics.TableScorer` as ``metrics=table`` at test (as many rows as the test split).
Times: ``fit_s`` (the package's preprocessing and training), ``total_s`` (fit, sampling and scoring).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from experiments.common import ROOT
from src.metrics import TableScorer
from src.runtime.build import build_datamodule


def datamodule(table: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={table}", "model=tvae"])
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup()
    return dm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", required=True)
    parser.add_argument("--model", choices=["ctgan", "tvae"], required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from ctgan import CTGAN, TVAE  # the benchmark's environment only

    dm = datamodule(args.table)
    train = dm.frame("train")
    discrete = [c.name for c in dm.schema.columns if c.kind == "discrete"]
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.model == "ctgan":
        model = CTGAN(epochs=args.epochs, batch_size=args.batch_size, verbose=False, enable_gpu=False)
    else:
        model = TVAE(epochs=args.epochs, batch_size=args.batch_size, verbose=False, enable_gpu=False)
    model.set_random_state(args.seed)
    started = time.perf_counter()
    model.fit(train, discrete_columns=discrete)
    fit_s = time.perf_counter() - started
    test = dm.frame("test")
    synthetic = model.sample(len(test))[dm.schema.names]
    # Back to the table's dtypes (the package returns floats for integer columns).
    synthetic = dm.schema.decode(dm.schema.encode(synthetic))
    scorer = TableScorer()
    scores = scorer.score(synthetic, dm, "test")
    total_s = time.perf_counter() - started
    protocol = scorer.protocol(dm, "test", len(synthetic), scores, rows="reference package")
    import ctgan

    args.out.write_text(
        json.dumps(
            {
                "table": args.table,
                "model": args.model,
                "implementation": f"ctgan {ctgan.__version__}",
                "seed": args.seed,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "fit_s": fit_s,
                "total_s": total_s,
                "scores": {f"test/{k}": v for k, v in scores.items()},
                "verdict": protocol.get("verdict"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
