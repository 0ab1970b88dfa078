"""Compare seeds and configurations: ``python -m src.compare logs/train/multiruns/<timestamp>``.

Takes run directories and/or multirun directories, groups the runs by configuration (their
overrides without the seed), and writes ``compare.md``, ``compare.json`` and ``compare.png``
(mean ± spread over seeds of every score, score-vs-step curves) into ``--out`` (default: the one
directory given, or the directories' common parent); with W&B in the runs' logger config (or
``--wandb on``) also logs them to W&B.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from src.metrics.compare import (
    compare_runs,
    find_runs,
    log_comparison_to_wandb,
    wandb_settings,
    write_comparison,
)
from src.runtime.run import report_error
from src.utils.errors import UserError
from src.utils.logging import quiet_library_noise


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one `Error:` line instead of argparse's usage block
        raise UserError(f"{message} (usage: python -m src.compare <run or multirun dir> [...] [--out DIR])")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="python -m src.compare", description=__doc__)
    parser.add_argument("paths", nargs="+", help="run directories and/or multirun directories")
    parser.add_argument("--out", type=Path, default=None, help="where compare.{md,json,png} go")
    parser.add_argument(
        "--scores", default=None, help="comma-separated scores to tabulate and plot (default: all)"
    )
    parser.add_argument(
        "--wandb", choices=("auto", "on", "off"), default="auto", help="auto: when the runs logged to W&B"
    )
    return parser.parse_args(argv)


def compare(argv: list[str]) -> None:
    args = parse(argv)
    directories = find_runs(args.paths)
    out = args.out or Path(os.path.commonpath([str(Path(p).expanduser().resolve()) for p in args.paths]))
    print(f"compare: {len(directories)} runs -> {out}", flush=True)
    scores = [s.strip() for s in args.scores.split(",") if s.strip()] if args.scores else None
    comparison = compare_runs(directories)
    paths = write_comparison(comparison, out, scores)
    settings = wandb_settings(directories)
    if args.wandb == "on" or (args.wandb == "auto" and settings is not None):
        run_dir = log_comparison_to_wandb(comparison, paths, settings or {}, out)
        print(f"compare: W&B run in {run_dir}", flush=True)
    print(paths["markdown"].read_text())
    print(f"compare: wrote {', '.join(str(p) for p in paths.values())}", flush=True)


def main() -> None:
    quiet_library_noise()
    try:
        compare(sys.argv[1:])
    except UserError as exc:
        report_error(str(exc))
        sys.exit(2)


if __name__ == "__main__":
    main()
