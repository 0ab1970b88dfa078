"""Tables: every table model on the bundled tables beside the reference implementations, plus the fill.

    python -m experiments.tabular.run                        # the study (3 seeds, 100 epochs)
    python -m experiments.tabular.run --seeds 0 --epochs 5 --out /tmp/tab   # a smoke run

For each bundled table (``breast_cancer``: 569 x 31, ``doctor_aus``: 5,190 x 15, mixed types) and
seed:

* this framework's ``tvae``, ``ctgan`` and ``gaussian_copula``, trained by ``python -m src.train
  model=<m> data=<table> seed=<s> trainer.max_epochs=<epochs>`` (the last epoch's weights:
  ``model.monitor=null``; validation scores only at the last epoch, as the reference has none),
  scored at test by ``metrics=table`` (as many generated rows as the test split);
* the ``ctgan`` package's CTGAN and TVAE (``experiments/tabular/reference.py``) at the same epochs
  and batch size, on the same training rows, scored by the same scorer. The package is installed
  into ``experiments/tabular/.bench`` (``--install-reference``), never into the project.
* the fill: for ``doctor_aus`` (target ``insurance``, its smallest class 4 % of the rows), each deep
  model's best run fills the training split to balance (``python -m src.generate ... fill=balance``)
  and ``python -m src.evaluate_dataset ... augmentation.enabled=true`` compares the classifier's
  rare-class recall with real + fill against real + SMOTE (and the other baselines).

Times: ``fit_s`` is the fit's wall time (this framework: ``metrics.json`` ``timing.fit_s``, the
data set-up and the mixture fit included; the package: ``fit()``); ``total_s`` the whole run up
to the final scores (this framework: the process, start-up included). One thread per process, two
side by side on the 2-core VM. Writes ``results.json`` and ``results.md`` (targets and their status).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from experiments.common import ROOT, machine_description, markdown_table, run_train_job

HERE = Path(__file__).resolve().parent
BENCH = HERE / ".bench"
REFERENCE_PACKAGES = ["ctgan==0.12.1", "rdt==1.19.0", "Faker==40.63.0"]
TABLES = {"breast_cancer": 100, "doctor_aus": 500}  # table -> batch size (the data config's)
MODELS = ("tvae", "ctgan", "gaussian_copula")
REFERENCE_MODELS = ("tvae", "ctgan")
SCORES = [
    "test/quality",
    "test/column_shapes",
    "test/column_pair_trends",
    "test/detection_auc",
    "test/dcr",
    "test/dcr_closer_share",
    "test/exact_copy_share",
    "test/tstr_accuracy",
    "test/trtr_accuracy",
    "test/tstr_f1",
    "test/trtr_f1",
]
FILL_TABLE = "doctor_aus"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def ours(table: str, model: str, seed: int, epochs: int, log_dir: Path) -> dict[str, Any]:
    run_dir = log_dir / f"{table}_{model}_{seed}"
    overrides = [
        f"model={model}",
        f"data={table}",
        f"seed={seed}",
        f"trainer.max_epochs={epochs}",
        "model.monitor=null",
        f"metrics.every_n_epochs={epochs}",
        "trainer.enable_progress_bar=false",
    ]
    run_dir, seconds = run_train_job(overrides, log_dir, run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "table": table,
        "model": model,
        "implementation": "genlab",
        "seed": seed,
        "fit_s": metrics["timing"]["fit_s"],
        "total_s": seconds,
        "scores": {k: metrics.get(k) for k in SCORES},
        "verdict": metrics["protocol"]["test"].get("verdict"),
        "run_dir": str(run_dir),
    }


def reference(table: str, model: str, seed: int, epochs: int, log_dir: Path) -> dict[str, Any]:
    out = log_dir / f"ref_{table}_{model}_{seed}.json"
    command = [
        sys.executable, "-m", "experiments.tabular.reference", "--table", table, "--model", model,
        "--seed", str(seed), "--epochs", str(epochs), "--batch-size", str(TABLES[table]), "--out", str(out),
    ]  # fmt: skip
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT)])}
    log = out.with_suffix(".log")
    with open(log, "w") as handle:
        proc = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"reference run failed; log: {log}")
    return json.loads(out.read_text())


def fill_row(run: dict[str, Any], log_dir: Path) -> dict[str, Any]:
    """Fill the training split of ``run``'s table to balance, then the augmentation report."""
    out_dir = log_dir / f"fill_{run['model']}_{run['seed']}"
    checkpoint = Path(run["run_dir"]) / "checkpoints" / "last.ckpt"
    base = [sys.executable, "-m"]
    for command in (
        [*base, "src.generate", f"ckpt_path={checkpoint}", "fill=balance", f"out_dir={out_dir}", "overwrite=true",
         f"paths.log_dir={log_dir}"],
        [*base, "src.evaluate_dataset", f"synthetic={out_dir}", f"data={run['table']}", "augmentation.enabled=true",
         f"paths.log_dir={log_dir}"],
    ):  # fmt: skip
        log = log_dir / f"{out_dir.name}.log"
        with open(log, "a") as handle:
            proc = subprocess.run(command, cwd=ROOT, env=ENV, stdout=handle, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            # A fill that cannot be made (a class the model never draws) is a result, not a crash.
            errors = [line for line in log.read_text().splitlines() if line.startswith("Error: ")]
            if not errors:
                raise RuntimeError(f"{' '.join(command)} failed; log: {log}")
            return {"model": run["model"], "seed": run["seed"], "failed": errors[-1]}
    report = json.loads((out_dir.parent / f"{out_dir.name}.augmentation.json").read_text())
    arms = report["arms"]
    return {
        "model": run["model"],
        "seed": run["seed"],
        "rare_classes": report["protocol"]["rare_classes"],
        **{f"{arm}/{name}": value["mean"] for arm, scores in arms.items() for name, value in scores.items()},
    }


def summarise(rows: list[dict[str, Any]], key: str) -> tuple[float, float]:
    values = [r["scores"][key] if key.startswith("test/") else r[key] for r in rows]
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def cell(mean: float, std: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def targets(
    groups: dict[tuple[str, str, str], list[dict[str, Any]]], fills: list[dict[str, Any]]
) -> list[list[str]]:
    """Each target of issue 28 with its status, computed from the runs (means over seeds)."""
    out: list[list[str]] = []

    def mean(table: str, model: str, impl: str, key: str) -> float:
        return summarise(groups.get((table, model, impl), []), key)[0]

    tables = [t for t in TABLES if any(key[0] == t for key in groups)]
    for table in tables:
        for model in REFERENCE_MODELS:
            if (table, model, "reference") not in groups:
                continue
            q, qr = (
                mean(table, model, "genlab", "test/quality"),
                mean(table, model, "reference", "test/quality"),
            )
            d, dr = (
                mean(table, model, "genlab", "test/detection_auc"),
                mean(table, model, "reference", "test/detection_auc"),
            )
            met = q >= qr and d <= dr
            out.append([f"{table}: {model} >= package's in quality and detection", f"quality {q:.3f} vs {qr:.3f}; detection AUC {d:.3f} vs {dr:.3f} (lower is better)", "met" if met else "not met"])  # fmt: skip
    table = FILL_TABLE
    if table in tables:
        best_deep = max(mean(table, m, "genlab", "test/quality") for m in REFERENCE_MODELS)
        copula = mean(table, "gaussian_copula", "genlab", "test/quality")
        out.append([f"{table}: best deep model >= copula (quality)", f"{best_deep:.3f} vs {copula:.3f}", "met" if best_deep >= copula else "not met"])  # fmt: skip
    for t in tables:
        for model in REFERENCE_MODELS:
            if (t, model, "reference") not in groups:
                continue
            f, fr = mean(t, model, "genlab", "fit_s"), mean(t, model, "reference", "fit_s")
            need = 3.0 if t == FILL_TABLE else 1.0
            out.append([f"{t}: {model} fit time {'3x shorter than' if need > 1 else 'no longer than'} the package's", f"{f:.1f} s vs {fr:.1f} s ({fr / f:.2f}x)", "met" if fr >= need * f else "not met"])  # fmt: skip
    for t in tables:
        for model in MODELS:
            if (t, model, "genlab") not in groups:
                continue
            tstr, trtr = (
                mean(t, model, "genlab", "test/tstr_accuracy"),
                mean(t, model, "genlab", "test/trtr_accuracy"),
            )
            out.append([f"{t}: {model} TSTR accuracy >= 0.9 x train-on-real", f"{tstr:.3f} vs 0.9 x {trtr:.3f} = {0.9 * trtr:.3f}", "met" if tstr >= 0.9 * trtr else "not met"])  # fmt: skip
    done = [f for f in fills if "failed" not in f]
    for f in fills:
        if "failed" in f:
            out.append([f"{FILL_TABLE}: {f['model']} seed {f['seed']} fills the rare classes", f["failed"], "could not fill"])  # fmt: skip
    if done:
        best = max(
            statistics.mean(f["real+synthetic/rare_recall"] for f in done if f["model"] == m)
            for m in {f["model"] for f in done}
        )
        smote = statistics.mean(f["real+smote/rare_recall"] for f in done)
        out.append([f"{FILL_TABLE}: rare-class recall of real + fill >= real + SMOTE", f"best model {best:.3f} vs SMOTE {smote:.3f}", "met" if best >= smote else "not met"])  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=2, help="runs side by side (one thread each)")
    parser.add_argument("--no-reference", action="store_true", help="skip the ctgan package's runs")
    parser.add_argument(
        "--install-reference",
        action="store_true",
        help=f"pip install {' '.join(REFERENCE_PACKAGES)} into {BENCH}",
    )
    parser.add_argument("--no-fill", action="store_true")
    parser.add_argument(
        "--fill-only",
        action="store_true",
        help="add the fill to the results.json in --out (its runs' checkpoints must still be in --log-dir)",
    )
    parser.add_argument("--log-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    if args.install_reference:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(BENCH), *REFERENCE_PACKAGES], check=True)  # fmt: skip
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="tabular_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    previous: dict[str, Any] = {}
    if args.fill_only:
        previous = json.loads((args.out / "results.json").read_text())
        runs = previous["runs"]
        args.epochs, args.seeds = previous["epochs"], previous["seeds"]
    else:
        jobs = [(ours, t, m, s) for t in args.tables for m in args.models for s in args.seeds]
        if not args.no_reference:
            jobs += [(reference, t, m, s) for t in args.tables for m in REFERENCE_MODELS if m in args.models for s in args.seeds]  # fmt: skip
        with ThreadPoolExecutor(args.parallel) as pool:
            runs = list(pool.map(lambda job: job[0](job[1], job[2], job[3], args.epochs, log_dir), jobs))
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for run in runs:
        impl = "genlab" if run["implementation"] == "genlab" else "reference"
        groups.setdefault((run["table"], run["model"], impl), []).append(run)
    fills: list[dict[str, Any]] = []
    if not args.no_fill and FILL_TABLE in args.tables:
        fill_runs = [
            r
            for r in runs
            if r["table"] == FILL_TABLE and r["implementation"] == "genlab" and r["model"] in REFERENCE_MODELS
        ]
        with ThreadPoolExecutor(args.parallel) as pool:
            fills = list(pool.map(lambda r: fill_row(r, log_dir), fill_runs))
    wall = time.perf_counter() - started
    fill_wall = wall if args.fill_only else None
    if args.fill_only:
        wall = previous["wall_s"]

    header = ["table", "model", "implementation", "quality", "detection AUC", "DCR", "closer-to-train", "TSTR acc", "TRTR acc", "fit s", "total s"]  # fmt: skip
    rows = []
    for (table, model, impl), group in sorted(groups.items()):
        rows.append([
            table, model, impl if impl == "genlab" else group[0]["implementation"],
            *(cell(*summarise(group, k)) for k in ["test/quality", "test/detection_auc", "test/dcr", "test/dcr_closer_share", "test/tstr_accuracy", "test/trtr_accuracy"]),
            cell(*summarise(group, "fit_s"), 1), cell(*summarise(group, "total_s"), 1),
        ])  # fmt: skip
    target_rows = targets(groups, fills)
    results = {"machine": machine_description(), "wall_s": wall, "fill_wall_s": fill_wall, "epochs": args.epochs, "seeds": args.seeds, "runs": runs, "fills": fills, "targets": target_rows}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    lines = [
        "# Tables: results",
        "",
        f"Machine: {machine_description()}. Seeds {args.seeds}, {args.epochs} epochs, one thread per run, "
        f"{args.parallel} side by side; wall time {wall / 60:.1f} min"
        + (f" (+ {fill_wall / 60:.1f} min for the fill)" if fill_wall else "")
        + ". Mean ± std over seeds; test split scores "
        "(as many generated rows as the test split).",
        "",
        markdown_table(header, rows),
        "",
        "## Targets",
        "",
        markdown_table(["target", "measured", "status"], target_rows),
        "",
    ]
    if fills:
        arms = ["real", "real+synthetic", "real+oversample", "real+class_weights", "real+smote"]
        fill_rows = [
            [f["model"], f["seed"], *(f"{f.get(f'{a}/rare_recall', float('nan')):.3f}" for a in arms)]
            for f in fills
            if "failed" not in f
        ]
        lines += ["## Fill of doctor_aus (rare-class recall of the classifier per arm)", "", markdown_table(["model", "seed", *arms], fill_rows), ""]  # fmt: skip
    (args.out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
