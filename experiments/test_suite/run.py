"""How long the test suite takes, on a clean clone, and where the time goes.

    python -m experiments.test_suite.run                      # make test + make test-fast, this commit
    python -m experiments.test_suite.run --ref 1322656 --label before --workers 1 --fast-too false
    python -m experiments.test_suite.run --coverage           # adds line coverage of src/ (slower)

Clones the given commit of this checkout into a temporary folder, runs `make install` there
(timed apart: the targets are about the tests), then `make test` and `make test-fast` with
pytest's per-test durations in a JUnit file, and writes `results_<label>.json` and a markdown table
into this folder: wall times, the 30 slowest tests, and the time by kind (README commands,
multi-process runs, other command-line start-ups, in-process tests). Run it on an idle machine:
a second job beside it changes every number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from experiments.common import machine_description

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# Where a test's time goes, by its file: the kinds the suite's cost is reported in.
KINDS = {
    "tests/test_readme.py": "README commands (python -m / make subprocesses)",
    "tests/test_readme_runs.py": "README commands (python -m / make subprocesses)",
    "tests/test_ddp.py": "multi-process runs (DDP, sweeps)",
    "tests/test_gan_ddp.py": "multi-process runs (DDP, sweeps)",
    "tests/test_metrics_ddp.py": "multi-process runs (DDP, sweeps)",
    "tests/test_sweeps.py": "multi-process runs (DDP, sweeps)",
}


def kind_of(test_file: str) -> str:
    return KINDS.get(test_file, "in-process tests (training, scoring, export, ...)")


def run_make(clone: Path, target: str, workers: int, junit: Path, extra: str = "") -> float:
    args = f"--durations=30 --junitxml={junit} {extra}".strip()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    started = time.perf_counter()
    proc = subprocess.run(
        ["make", target, f"WORKERS={workers}", f"ARGS={args}"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    (junit.parent / f"{target}.log").write_text(proc.stdout[-20000:] + proc.stderr[-20000:])
    if proc.returncode != 0:
        raise SystemExit(f"{target} failed (exit {proc.returncode}); log: {junit.parent / f'{target}.log'}")
    return seconds


def read_junit(path: Path) -> list[dict]:
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        classname = case.get("classname", "")
        test_file = (
            "tests/" + classname.split(".")[1] + ".py" if classname.startswith("tests.") else classname
        )
        cases.append({"file": test_file, "name": case.get("name", ""), "seconds": float(case.get("time", 0))})
    return cases


def summarise(cases: list[dict]) -> dict:
    by_kind: dict[str, float] = defaultdict(float)
    by_file: dict[str, float] = defaultdict(float)
    for case in cases:
        by_kind[kind_of(case["file"])] += case["seconds"]
        by_file[case["file"]] += case["seconds"]
    slowest = sorted(cases, key=lambda c: -c["seconds"])[:30]
    return {
        "tests": len(cases),
        "test_seconds_sum": sum(c["seconds"] for c in cases),
        "by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
        "by_file": dict(sorted(by_file.items(), key=lambda kv: -kv[1])),
        "slowest": slowest,
    }


LOADFILE = ("--dist", "loadfile", "--no-loadscope-reorder")


def coverage_percent(clone: Path, workers: int) -> float:
    """Line coverage of src/ by `make test`'s tests, subprocesses included (pyproject's [tool.coverage])."""
    data = clone / ".coverage"
    env = {**os.environ, "COVERAGE_FILE": str(data), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    python = str(clone / ".venv" / "bin" / "python")
    subprocess.run(
        [python, "-m", "coverage", "run", "-m", "pytest", "-q", "-n", str(workers), *LOADFILE],
        cwd=clone,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run([python, "-m", "coverage", "combine"], cwd=clone, env=env, check=True, capture_output=True)
    return merged_line_coverage(data, clone / "src")


def merged_line_coverage(data_file: Path, src: Path) -> float:
    """Percent of the statements of ``src``'s files that some process executed.

    A process that imports ``src`` from another copy of the same code (the README test's copies of
    the checkout; a command started outside the checkout, which the editable install points at the
    development checkout) records its lines under that copy's path: each file is matched by its path
    below ``src/``, so no file counts twice (``coverage report`` lists every alias as a file of its own).
    """
    from coverage import CoverageData
    from coverage.parser import PythonParser

    data = CoverageData(basename=str(data_file))
    data.read()
    executed: dict[str, set[int]] = defaultdict(set)
    for measured in data.measured_files():
        if "/src/" in measured:
            executed[measured[measured.rindex("/src/") + 1 :]] |= set(data.lines(measured) or ())
    statements = covered = 0
    for path in sorted(src.rglob("*.py")):
        parser = PythonParser(filename=str(path))
        parser.parse_source()
        lines = set(parser.statements)
        statements += len(lines)
        covered += len(lines & executed[f"src/{path.relative_to(src)}"])
    return 100.0 * covered / max(statements, 1)


def markdown(results: dict) -> str:
    lines = [
        f"### {results['label']} ({results['ref']}, {results['workers']} worker(s))",
        "",
        f"Machine: {results['machine']}. `make install` {results['install_s']:.0f} s (not counted).",
        "",
        "| command | wall time | tests |",
        "|---|---|---|",
    ]
    for target, entry in results["targets"].items():
        lines.append(
            f"| `make {target}` | {entry['wall_s']:.0f} s ({entry['wall_s'] / 60:.1f} min) | {entry['tests']} |"
        )
    if results.get("coverage") is not None:
        lines += [
            "",
            f"Line coverage of `src/` (`make test`'s tests, subprocesses included): {results['coverage']:.1f} %",
        ]
    full = results["targets"].get("test")
    if full:
        lines += [
            "",
            "Time by kind (sum of test durations, all workers):",
            "",
            "| kind | seconds |",
            "|---|---|",
        ]
        lines += [f"| {kind} | {seconds:.0f} |" for kind, seconds in full["by_kind"].items()]
        lines += ["", "30 slowest tests:", "", "| seconds | test |", "|---|---|"]
        lines += [f"| {c['seconds']:.1f} | `{c['file']}::{c['name'][:90]}` |" for c in full["slowest"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", default="HEAD", help="the commit to measure")
    parser.add_argument("--label", default="after")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fast-too", default="true", choices=["true", "false"])
    parser.add_argument("--coverage", action="store_true")
    parser.add_argument(
        "--coverage-of",
        nargs=2,
        metavar=("DATA_FILE", "SRC_DIR"),
        help="only print the merged line coverage of SRC_DIR in an existing (combined) coverage data file",
    )
    args = parser.parse_args()
    if args.coverage_of:
        print(f"{merged_line_coverage(Path(args.coverage_of[0]), Path(args.coverage_of[1])):.1f} %")
        return
    ref = subprocess.run(
        ["git", "rev-parse", "--short", args.ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="genlab-suite-") as tmp:
        clone = Path(tmp) / "genlab"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "checkout", "-q", ref], cwd=clone, check=True)
        started = time.perf_counter()
        subprocess.run(["make", "install"], cwd=clone, check=True, capture_output=True)
        install_s = time.perf_counter() - started
        if args.workers > 1 and "WORKERS" not in (clone / "Makefile").read_text():
            raise SystemExit(f"{ref} runs its tests in one process: measure it with --workers 1")
        results: dict = {
            "label": args.label,
            "ref": ref,
            "workers": args.workers,
            "machine": machine_description(),
            "install_s": install_s,
            "targets": {},
        }
        targets = ["test", "test-fast"] if args.fast_too == "true" else ["test"]
        logs = Path(tempfile.mkdtemp(prefix="genlab-suite-logs-"))  # kept: the make logs and JUnit files
        print(f"logs: {logs}", flush=True)
        for target in targets:
            junit = logs / f"{target}.xml"
            wall = run_make(clone, target, args.workers, junit)
            results["targets"][target] = {"wall_s": wall, **summarise(read_junit(junit))}
            print(f"make {target}: {wall:.0f} s", flush=True)
        if args.coverage:
            results["coverage"] = coverage_percent(clone, args.workers)
            print(f"coverage: {results['coverage']:.1f} %", flush=True)
        shutil.rmtree(clone / ".venv", ignore_errors=True)
    (HERE / f"results_{args.label}.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / f"results_{args.label}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
