"""Verify an exported dataset: ``python -m src.verify_dataset synthetic/mnist_cgan``.

Checks every file against ``SHA256SUMS`` and the manifest; names each missing, extra or altered
file. Exit code 0 when intact, 1 when not, 2 when the path is not a directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.export.verify import verify_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.verify_dataset", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="an export written by src.generate")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        print(f"Error: {args.directory} is not a directory: pass the out_dir of an export.", file=sys.stderr)
        return 2
    problems = verify_dataset(args.directory)
    if not problems:
        print(f"OK: {args.directory} matches its SHA256SUMS and manifest.")
        return 0
    for problem in problems:
        print(problem, file=sys.stderr)
    print(
        f"Error: {args.directory} failed verification ({len(problems)} problem(s) listed above).",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
