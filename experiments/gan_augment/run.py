"""Every GAN with and without discriminator augmentation on the bundled MNIST subset, equal wall clock.

    python -m experiments.gan_augment.run                       # the study: 5 models x 3 settings x 3 seeds
    python -m experiments.gan_augment.run --max-time 120 --seeds 1 --val-every 2   # ~25 min on 2 cores
    python -m experiments.gan_augment.run --smoke               # a few minutes: the pipeline, tiny budget
    python -m experiments.gan_augment.run --merge DIR DIR --out DIR   # pool finished runs into one table

Each job is ``python -m src.train`` with the GAN study's preset for the model
(``experiment=gan_losses_mnist*``: batch 64, domain metrics, validation every 10 epochs selecting
``best.ckpt`` by ``val/fid``, ``trainer.max_time`` as the budget) plus ``model.augment=<setting>``,
on one CPU thread, ``--parallel`` jobs side by side. ``--max-time`` (seconds, default 600 as in the GAN
study) and ``--seeds`` size the study. The test FID (10,000 samples of the best checkpoint against the
test split, in the domain extractor's feature space) and the other test scores are read from each
run's ``metrics.json``; ``results.json`` keeps every run and the mean ± sample standard deviation per
model and setting, ``results.md`` the tables. Results go to this folder only for a full-budget run
(``--max-time`` >= 600, no ``--smoke``); anything shorter goes to a temporary directory unless
``--out`` says otherwise, so short runs never pass for the study's numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from experiments.common import machine_description, markdown_table, run_train_job
from experiments.gan_losses_mnist.run import MODELS

HERE = Path(__file__).resolve().parent
SETTINGS = ("none", "diffaugment", "ada")
SEEDS = (1, 2, 3)
STUDY_SECONDS = 600  # the GAN study's budget (experiment=gan_losses_mnist)
# ADA's p may go from 0 to 1 in this many thousand real images. The paper's 500 kimg is 2 % of a
# 25,000 kimg run; a 10-minute CPU run here sees 350-1,200 kimg, so 500 would let p barely reach
# its level before the budget ends. 100 kimg: at most ~0.003 per adjustment (4 batches of 64).
ADA_KIMG = 100.0
SCORES = ["test/fid", "test/kid", "test/precision", "test/recall", "test/coverage", "test/confident_frac"]
EXTRA = ["global_step", "epoch", "train/ada_p"]
SMOKE = [
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "metrics.n_fake_val=200",
    "metrics.n_fake_test=200",
]


def max_time(seconds: int) -> str:
    """``trainer.max_time`` ("DD:HH:MM:SS") of a budget in seconds."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"00:{hours:02d}:{minutes:02d}:{secs:02d}"


def job_overrides(
    model: str, setting: str, seed: int, args: argparse.Namespace, extra: list[str]
) -> list[str]:
    """The command line of one job: the GAN study's preset, the augmentation, seed and budget."""
    overrides = [*MODELS[model], f"model.augment={setting}", f"seed={seed}"]
    if setting == "ada":
        overrides.append(f"model.ada_kimg={args.ada_kimg:g}")
    overrides += [
        f"trainer.max_time={max_time(args.max_time)}",
        f"trainer.check_val_every_n_epoch={args.val_every}",
    ]
    return overrides + extra


def run_job(
    model: str, setting: str, seed: int, args: argparse.Namespace, log_dir: Path, extra: list[str]
) -> dict[str, Any]:
    run_dir = log_dir / model / setting / f"seed{seed}"
    overrides = job_overrides(model, setting, seed, args, extra)
    _, seconds = run_train_job(overrides, log_dir, run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(f"{model} {setting} seed {seed}: test/fid {metrics.get('test/fid')} in {seconds:.0f} s", flush=True)
    return {
        "model": model,
        "setting": setting,
        "seed": seed,
        "run_dir": str(run_dir),
        "overrides": overrides,
        "wall_seconds": seconds,
        "status": metrics.get("status"),
        "scores": {name: metrics.get(name) for name in [*SCORES, *EXTRA] if metrics.get(name) is not None},
        "extractor": metrics.get("protocol", {}).get("test", {}).get("extractor"),
        "data_source": metrics.get("data_source"),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{model: {setting: {score: {mean, std, n}}}}`` over seeds (std: sample, 0 for one seed)."""
    summary: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for run in runs:
        cell = summary.setdefault(run["model"], {}).setdefault(run["setting"], {})
        for name, value in run["scores"].items():
            cell.setdefault(name, {"values": []})["values"].append(float(value))  # type: ignore[arg-type]
    for settings in summary.values():
        for scores in settings.values():
            for stats in scores.values():
                values = stats.pop("values")  # type: ignore[arg-type]
                stats.update(
                    mean=statistics.fmean(values),
                    std=statistics.stdev(values) if len(values) > 1 else 0.0,
                    n=len(values),
                )
    return summary


def cell(stats: dict[str, float] | None, digits: int = 1) -> str:
    if not stats:
        return "n/a"
    if stats["n"] == 1:
        return f"{stats['mean']:.{digits}f} (n=1)"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def versus_none(summary: dict, model: str, setting: str) -> str:
    """Change of mean test FID against ``none``; "beyond spread" when it exceeds both stds summed."""
    base, other = (
        summary[model].get("none", {}).get("test/fid"),
        summary[model].get(setting, {}).get("test/fid"),
    )
    if not base or not other or setting == "none":
        return ""
    delta = other["mean"] - base["mean"]
    beyond = other["n"] > 1 and base["n"] > 1 and abs(delta) > base["std"] + other["std"]
    return f"{delta:+.1f}{' (beyond spread)' if beyond else ''}"


def tables(summary: dict, settings: list[str]) -> str:
    models = list(summary)
    fid = markdown_table(
        [
            "model",
            *[f"`augment={s}`" for s in settings],
            *[f"Δ {s} vs none" for s in settings if s != "none"],
        ],
        [
            [
                f"`{model}`",
                *[cell(summary[model].get(s, {}).get("test/fid")) for s in settings],
                *[versus_none(summary, model, s) for s in settings if s != "none"],
            ]
            for model in models
        ],
    )
    other = markdown_table(
        ["model", "setting", *SCORES[1:], "global_step", "final ada p"],
        [
            [
                f"`{model}`",
                setting,
                *[cell(summary[model][setting].get(name), 3) for name in SCORES[1:]],
                cell(summary[model][setting].get("global_step"), 0),
                cell(summary[model][setting].get("train/ada_p"), 3) if setting == "ada" else "",
            ]
            for model in models
            for setting in settings
            if setting in summary[model]
        ],
    )
    return (
        "Test FID (domain extractor's feature space, lower is better), mean ± sample std over seeds; "
        "Δ: mean change against `augment=none` (beyond spread: larger than the two stds summed).\n\n"
        f"{fid}\nOther test scores and the budget's reach:\n\n{other}"
    )


def write_results(out: Path, results: dict[str, Any], settings: list[str], header: str) -> None:
    """``results.json`` and ``results.md`` (the header, then the tables) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = header + tables(results["summary"], settings)
    (out / "results.md").write_text(text)
    print(text)


def merge(sources: list[Path], out: Path) -> None:
    """One table from several finished full-budget runs of this script (e.g. one model per run).

    Every source keeps its own protocol, wall time and machine under ``sources``; the runs are
    pooled and summarised again. Refuses sources of different budgets or smoke runs, whose numbers
    are not comparable.
    """
    loaded = [json.loads((source / "results.json").read_text()) for source in sources]
    budgets = {r["protocol"]["max_time"] for r in loaded}
    if len(budgets) > 1 or not all(r["protocol"]["full_budget"] for r in loaded):
        raise SystemExit(f"Error: --merge needs full-budget runs of one budget; got {sorted(budgets)}")
    runs = [run for r in loaded for run in r["runs"]]
    settings = [s for s in SETTINGS if any(run["setting"] == s for run in runs)]
    seeds = sorted({run["seed"] for run in runs})
    results = {
        "machine": loaded[0]["machine"],
        "protocol": {**loaded[0]["protocol"], "models": {}, "settings": settings, "seeds": seeds},
        "sources": [
            {"path": str(source), "protocol": r["protocol"], "wall_seconds": r["wall_seconds"]}
            for source, r in zip(sources, loaded)
        ],
        "wall_seconds": sum(r["wall_seconds"] for r in loaded),
        "job_seconds_mean": statistics.fmean(run["wall_seconds"] for run in runs),
        "summary": summarise(runs),
        "runs": runs,
    }
    for r in loaded:
        results["protocol"]["models"].update(r["protocol"]["models"])
    header = (
        f"Budget `trainer.max_time={budgets.pop()}` per run, seeds {', '.join(map(str, seeds))}; "
        f"merged from {len(sources)} runs of this script (each under `sources` in results.json: "
        + "; ".join(
            f"{', '.join(r['protocol']['models'])}: {r['protocol']['parallel']} job(s) at a time, "
            f"{r['wall_seconds'] / 60:.1f} min"
            for r in loaded
        )
        + f"); {results['machine']}; jobs {results['job_seconds_mean'] / 60:.1f} min on average.\n\n"
    )
    write_results(out, results, settings, header)
    print(f"merged {len(runs)} runs into {out}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 1 2 3 (--smoke: 1)")
    parser.add_argument(
        "--max-time", type=int, default=STUDY_SECONDS, help="wall-clock budget per run, seconds"
    )
    parser.add_argument(
        "--val-every", type=int, default=10, help="epochs between validations (best.ckpt by val/fid)"
    )
    parser.add_argument("--ada-kimg", type=float, default=ADA_KIMG, help="model.ada_kimg of the ada runs")
    parser.add_argument("--parallel", type=int, default=2, help="jobs side by side (one thread each)")
    parser.add_argument(
        "--smoke", action="store_true", help="a 20 s budget and few batches: the pipeline only"
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="where the runs go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="where the results go")
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="pool finished results folders into --out; trains nothing"
    )
    parser.add_argument("overrides", nargs="*", help="extra overrides for every job")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out or HERE)
        return
    args.seeds = args.seeds or ([1] if args.smoke else list(SEEDS))
    if args.smoke:
        args.max_time, args.val_every = min(args.max_time, 20), 1
    extra = (SMOKE if args.smoke else []) + args.overrides
    full = not args.smoke and args.max_time >= STUDY_SECONDS
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="gan_augment_"))
    out = args.out or (HERE if full else log_dir / "results")
    jobs = [
        (model, setting, seed) for seed in args.seeds for model in args.models for setting in args.settings
    ]
    print(
        f"{len(jobs)} jobs of {args.max_time} s, {args.parallel} at a time; runs in {log_dir}, results in {out}",
        flush=True,
    )
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        runs = list(pool.map(lambda job: run_job(*job, args, log_dir, extra), jobs))
    wall = time.perf_counter() - started
    summary = summarise(runs)
    results = {
        "machine": machine_description(),
        "protocol": {
            "models": {model: MODELS[model] for model in args.models},
            "settings": args.settings,
            "seeds": args.seeds,
            "max_time": max_time(args.max_time),
            "val_every_n_epochs": args.val_every,
            "ada_kimg": args.ada_kimg,
            "parallel": args.parallel,
            "threads_per_job": 1,
            "smoke": args.smoke,
            "full_budget": full,
            "overrides": extra,
            "data_source": runs[0]["data_source"] if runs else None,
            "extractor": runs[0]["extractor"] if runs else None,
        },
        "wall_seconds": wall,
        "job_seconds_mean": statistics.fmean(r["wall_seconds"] for r in runs) if runs else 0.0,
        "summary": summary,
        "runs": runs,
    }
    header = (
        f"Budget `trainer.max_time={max_time(args.max_time)}` per run, seeds {', '.join(map(str, args.seeds))}, "
        f"validation every {args.val_every} epochs, ada_kimg {args.ada_kimg:g}; {machine_description()}; "
        f"study wall time {wall / 60:.1f} min (jobs {results['job_seconds_mean'] / 60:.1f} min on average)"
        f"{'; SMOKE RUN, not results' if args.smoke or not full else ''}.\n\n"
    )
    write_results(out, results, args.settings, header)
    print(f"wall time {wall / 60:.1f} min; results in {out}")


if __name__ == "__main__":
    main()
