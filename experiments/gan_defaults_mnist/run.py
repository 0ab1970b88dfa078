"""Each GAN's defaults as a user types them: ``python -m src.train model=<gan> data=mnist``.

    python -m experiments.gan_defaults_mnist.run                      # all five (hours on a 2-core CPU)
    python -m experiments.gan_defaults_mnist.run --models gan_mlp dcgan
    python -m experiments.gan_defaults_mnist.run --smoke              # a minute: the pipeline, tiny budget

Every job is that command with ``seed=1`` and nothing else changed: the model's default budget
(``conf/trainer/budget/<model>.yaml``, in generator updates), validation every epoch, best.ckpt by
``val/fid``, test on it. One CPU thread per job, ``--parallel`` jobs side by side. Results per model
are merged into this folder's results.json (a later call with other ``--models`` adds to it), with
the wall time of each command, the generator updates it made, its test scores and 64 samples of its
tested checkpoint (samples_<model>.png); README.md is written from results.json. ``--smoke`` writes into a
temporary directory instead (``--out`` to choose), so the measured results are never replaced.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from experiments.common import (
    CONFIDENT_P,
    machine_description,
    markdown_table,
    real_confident_share,
    run_train_job,
    sample_figure,
)
from src.models.checkpoint import CONFIG_KEY, read_checkpoint

HERE = Path(__file__).resolve().parent
MODELS = ("gan_mlp", "dcgan", "wgan_gp", "sngan", "cgan")
SEED = 1
SCORES = ("test/fid", "test/confident_frac", "test/precision", "test/recall", "test/coverage")
SMOKE = [
    "trainer.max_steps=6",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "metrics.n_fake_val=200",
    "metrics.n_fake_test=200",
]


def run_model(model: str, log_dir: Path, extra: list[str]) -> dict:
    run_dir, seconds = run_train_job(
        [f"model={model}", "data=mnist", f"seed={SEED}", *extra], log_dir, log_dir / model
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # One read of the tested checkpoint: its step and the run config stored in it.
    tested = read_checkpoint(metrics["protocol"]["tested_checkpoint"])
    config = tested[CONFIG_KEY]
    return {
        "command": f"python -m src.train model={model} data=mnist seed={SEED}",
        "overrides": extra,
        "wall_seconds": seconds,
        "budget_generator_updates": config["trainer"]["max_steps"],
        "batch_size": config["data"]["batch_size"],
        "generator_updates": metrics["global_step"],
        "epochs": metrics["epoch"],
        "tested_checkpoint_step": tested["global_step"],
        "scores": {name: metrics.get(name) for name in SCORES},
        "warnings": metrics.get("warnings", []),
        "run_dir": str(run_dir),
    }


def readme(results: dict) -> str:
    rows = []
    for model in MODELS:
        r = results["models"].get(model)
        if r is None:
            rows.append([f"`model={model}`", "not run yet", "", "", "", "", "", "", ""])
            continue
        s = r["scores"]
        rows.append(
            [
                f"`model={model}`",
                f"{r['budget_generator_updates']:,}",
                f"{r['generator_updates']:,}",
                f"{r['tested_checkpoint_step']:,}",
                f"{r['wall_seconds'] / 60:.1f} min",
                f"{s['test/fid']:.1f}",
                f"{s['test/confident_frac']:.1%}",
                f"{s['test/precision']:.2f} / {s['test/recall']:.2f}",
                f"{s['test/coverage']:.2f}",
            ]
        )
    table = markdown_table(
        [
            "command (+ `data=mnist seed=1`)",
            "default budget (generator updates)",
            "made",
            "best.ckpt (tested) at",
            "wall time",
            "test FID",
            "confident",
            "precision / recall",
            "coverage",
        ],
        rows,
    )
    missing = [m for m in MODELS if m not in results["models"]]
    pending = (
        f"\nNot run yet: {', '.join(f'`model={m}`' for m in missing)}; "
        f"`python -m experiments.gan_defaults_mnist.run --models {' '.join(missing)}` adds them.\n"
        if missing
        else ""
    )
    figures = " ".join(f"![{m}](samples_{m}.png)" for m in MODELS if m in results["models"])
    side_by_side = "jobs of this study side by side: " + ", ".join(
        f"{m} {record['jobs_side_by_side']}" for m, record in results["models"].items()
    )
    # What else ran on the machine meanwhile (not measurable by the script; written by whoever ran it).
    load = f"\n{results['load_note']}" if results.get("load_note") else ""
    real = results.get("real_confident")
    real_line = f" (real test images: {real['confident_frac']:.1%})" if real else ""
    return f"""# GAN defaults on MNIST, as typed

`python -m experiments.gan_defaults_mnist.run` runs `python -m src.train model=<gan> data=mnist seed=1`
for each GAN with nothing else changed: the model's default budget in generator updates
(`conf/trainer/budget/<model>.yaml`), batch 128 on the bundled 4,000-image MNIST subset, validation
every epoch, best.ckpt by `val/fid`, test on it (scores in the domain classifier's feature space).
Machine: {results["machine"]}; one CPU thread per job; {side_by_side}.
The wall time is the whole command (start-up, training, every validation, test).{load}

{table}
{pending}
"confident": share of samples the domain classifier assigns to one class with p >= {CONFIDENT_P}{real_line}.
Samples of each tested checkpoint (64, seed 0; class-conditional models: classes 0-7 by column):

{figures}

Last run on {results["date"]} (each row's day: above). This VM's speed varies from day to day (by up to ~3x for the same
benchmark), so the wall times hold for that day; the generator updates and scores do not depend on it.
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--parallel", type=int, default=2, help="jobs side by side (one thread each)")
    parser.add_argument("--smoke", action="store_true", help="tiny budget, results in a temp dir")
    parser.add_argument("--log-dir", type=Path, default=None, help="where the runs go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="where the results go")
    parser.add_argument("--readme-only", action="store_true", help="rewrite README.md from results.json")
    args = parser.parse_args()
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="gan_defaults_mnist_"))
    out = args.out or (log_dir / "results" if args.smoke else HERE)
    results_path = out / "results.json"
    if args.readme_only:
        (out / "README.md").write_text(readme(json.loads(results_path.read_text())))
        return
    extra = SMOKE if args.smoke else []
    print(
        f"{len(args.models)} jobs, {args.parallel} at a time; runs in {log_dir}, results in {out}", flush=True
    )
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        finished = dict(zip(args.models, pool.map(lambda m: run_model(m, log_dir, extra), args.models)))
    print(f"wall time {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    # Re-read right before writing: another call with other --models may have finished meanwhile.
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"models": {}}
    results.update(
        machine=machine_description(),
        date=time.strftime("%Y-%m-%d"),
        real_confident=real_confident_share(Path(next(iter(finished.values()))["run_dir"])),
    )
    results["models"].update(finished)
    for model, result in finished.items():
        result["jobs_side_by_side"] = min(args.parallel, len(args.models))
        sample_figure({model: Path(result["run_dir"])}, out / f"samples_{model}.png")
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    (out / "README.md").write_text(readme(results))
    print((out / "README.md").read_text())


if __name__ == "__main__":
    main()
