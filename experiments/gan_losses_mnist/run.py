"""The GAN family on MNIST at an equal wall-clock budget, 3 seeds each.

    python -m experiments.gan_losses_mnist.run            # the study (~1.5 h on a 2-core CPU)
    python -m experiments.gan_losses_mnist.run --smoke    # a few minutes: the whole pipeline, tiny budget

Every model (dcgan, gan_mlp, wgan_gp, sngan, cgan; presets in conf/experiment/gan_losses_mnist*.yaml)
trains for the same wall-clock time (``trainer.max_time``, 10 minutes) on one CPU thread, two jobs
side by side, for each seed; each job tests its best checkpoint (lowest ``val/fid``). The jobs are
then compared with ``src.compare`` (mean ± standard deviation over seeds of every score), and this
folder gets results.json, results.md, compare.png (score curves), samples.png and README.md.
``--smoke`` writes into a temporary directory instead (``--out`` to choose), so the measured
results are never replaced by smoke numbers.
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
    real_confident_share,
    run_config,
    run_train_job,
    sample_figure,
)
from src.metrics.compare import compare_runs, markdown, write_comparison

HERE = Path(__file__).resolve().parent
# Each model's command: the shared budget (experiment=gan_losses_mnist) or its tuned preset.
MODELS: dict[str, list[str]] = {
    "dcgan": ["experiment=gan_losses_mnist", "model=dcgan"],
    "gan_mlp": ["experiment=gan_losses_mnist", "model=gan_mlp"],
    "wgan_gp": ["experiment=gan_losses_mnist_wgan_gp"],
    "sngan": ["experiment=gan_losses_mnist_sngan"],
    "cgan": ["experiment=gan_losses_mnist_cgan"],
}
SEEDS = (1, 2, 3)
SCORES = [
    "test/fid",
    "test/kid",
    "test/is",
    "test/confident_frac",
    "test/precision",
    "test/recall",
    "test/density",
    "test/coverage",
    "test/swd",
    "test/swd_pixel",
    "test/detection_auc",
    "test/d_acc",
    "spread/val/fid",
    "divergence_events",
    "global_step",
    "epoch",
]
SMOKE = [
    "trainer.max_time=00:00:00:20",
    "trainer.check_val_every_n_epoch=1",
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "metrics.n_fake_val=200",
    "metrics.n_fake_test=200",
]


def run_job(model: str, seed: int, log_dir: Path, extra: list[str]) -> tuple[Path, float]:
    """``python -m src.train <model's overrides> seed=<seed>`` on one thread; its run dir and wall time."""
    return run_train_job([*MODELS[model], f"seed={seed}", *extra], log_dir, log_dir / model / f"seed{seed}")


def curve_findings(results: dict) -> str:
    """What the validation curves (mean over seeds) say about the budget, one line per model:
    the confident share and FID at the first, best and last validation, and whether FID was still
    falling over the last three (the evidence for "more updates would help")."""
    lines = []
    for row in results["comparison"]["configurations"]:
        curves = row.get("curves", {})
        fid, confident = curves.get("val/fid"), curves.get("val/confident_frac")
        if not fid or not confident or len(fid["mean"]) < 3:
            continue
        steps, fids, shares = fid["step"], fid["mean"], confident["mean"]
        peak = max(range(len(shares)), key=shares.__getitem__)
        last3 = fids[-3:]
        trend = "lower" if last3[-1] < last3[0] else "not lower"
        lines.append(
            f"- `{row['configuration']}`: confident share {shares[0]:.0%} at step {steps[0]}, "
            f"{shares[-1]:.0%} at the last validation (step {steps[-1]}), highest {shares[peak]:.0%} "
            f"(step {confident['step'][peak]}); val/fid {fids[0]:.0f} -> {fids[-1]:.0f}, {trend} at the last "
            f"validation than two before ({', '.join(f'{v:.0f}' for v in last3)})"
        )
    return "\n".join(lines)


def readme(results: dict, table: str) -> str:
    rows = {c["configuration"]: c for c in results["comparison"]["configurations"]}
    confident = []
    for model, overrides in MODELS.items():
        row = rows.get(
            " ".join(sorted(o for o in overrides if o not in results["comparison"]["common_overrides"]))
        )
        stats = (row or {}).get("scores", {}).get("test/confident_frac")
        if stats:
            confident.append(f"`{model}` {stats['mean']:.0%}")
    reached = ", ".join(confident) or "n/a"
    return f"""# GAN losses on MNIST at an equal wall-clock budget

Reproduce: `python -m experiments.gan_losses_mnist.run` (rewrites this folder; extra overrides:
`{" ".join(results["overrides"]) or "none"}`). Smoke test of the pipeline:
`python -m experiments.gan_losses_mnist.run --smoke`.

Setup: `data=mnist` (data source `{results["data_source"]}`), batch 64, every model trains for the
same wall clock, `trainer.max_time={results["max_time"]}` (validation included), on one CPU thread,
{results["parallel"]} jobs side by side, seeds {", ".join(map(str, results["seeds"]))}. Models and presets
(`conf/experiment/gan_losses_mnist*.yaml`): `dcgan` and `gan_mlp` (the fully-connected GAN) with
their paper settings; `wgan_gp` with 32-channel networks and Adam(2e-4, 0.5/0.9); `sngan` and `cgan`
with the SNGAN paper's standard CNN (DCGAN stack, spectral norm, hinge loss, one critic update).
Validation every 10 epochs (2,000 samples vs the validation split) selects `best.ckpt` by `val/fid`;
the test scores are 10,000 samples of it against the test split, in the feature space of the
framework's domain classifier (extractor `{results["extractor"]}`: scores are comparable only under
its hash, not with Inception-based figures).

Measured on: {results["machine"]}; wall time of the study {results["wall_seconds"] / 60:.1f} min
(jobs: {results["job_seconds_mean"] / 60:.1f} min each on average).

{table}
`test/confident_frac`: share of samples the domain classifier assigns to one class with
p >= {CONFIDENT_P} (real test images: {results["real_confident"]["confident_frac"]:.1%}); by model: {reached}.
A noise image can be classified confidently too: read it with FID, precision and the samples.
`spread/val/fid`: standard deviation of `val/fid` over each run's last 5 validations;
`global_step`: generator updates reached in the budget.

Validation curves, mean over seeds (step: real batches seen; generator updates for all but `wgan_gp`,
which updates its generator every 5th batch). A share still rising and an FID still falling at the end
say the budget, not the model, limits the score:

{curve_findings(results)}

![score curves: mean ± std over seeds](compare.png)

![64 samples of each model's tested checkpoint, seed {results["seeds"][0]} (cgan: digits 0-7, one per column)](samples.png)
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny budget, one seed, results in a temp dir")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--parallel", type=int, default=2, help="jobs side by side (one thread each)")
    parser.add_argument("--log-dir", type=Path, default=None, help="where the runs go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="where the results go")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every job")
    parser.add_argument(
        "--readme-only",
        action="store_true",
        help="rewrite README.md from the results.json there, run nothing",
    )
    args = parser.parse_args()
    if args.readme_only:
        out = args.out or HERE
        results = json.loads((out / "results.json").read_text())
        (out / "README.md").write_text(readme(results, (out / "results.md").read_text()))
        return
    seeds = args.seeds or ([1] if args.smoke else list(SEEDS))
    extra = (SMOKE if args.smoke else []) + args.overrides
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="gan_losses_mnist_"))
    out = args.out or (log_dir / "results" if args.smoke else HERE)
    jobs = [(model, seed) for seed in seeds for model in MODELS]
    print(f"{len(jobs)} jobs, {args.parallel} at a time; runs in {log_dir}, results in {out}", flush=True)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        finished = list(pool.map(lambda job: run_job(*job, log_dir, extra), jobs))
    wall = time.perf_counter() - started
    run_dirs = [run_dir for run_dir, _ in finished]
    comparison = compare_runs(run_dirs)
    out.mkdir(parents=True, exist_ok=True)
    write_comparison(comparison, out, SCORES)
    table = markdown(comparison, SCORES)
    first_seed = {model: log_dir / model / f"seed{seeds[0]}" for model in MODELS}
    sample_figure(first_seed, out / "samples.png")
    metrics = json.loads((run_dirs[0] / "metrics.json").read_text())
    config = run_config(run_dirs[0])
    results = {
        "machine": machine_description(),
        "wall_seconds": wall,
        "job_seconds_mean": sum(s for _, s in finished) / len(finished),
        "parallel": args.parallel,
        "seeds": seeds,
        "max_time": config["trainer"]["max_time"],
        "smoke": args.smoke,
        "overrides": extra,
        "data_source": metrics.get("data_source"),
        "extractor": metrics.get("protocol", {}).get("test", {}).get("extractor"),
        "real_confident": real_confident_share(run_dirs[0]),
        "comparison": comparison,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(table)
    (out / "README.md").write_text(readme(results, table))
    print(table)
    print(f"wall time {wall / 60:.1f} min; results in {out}")


if __name__ == "__main__":
    main()
