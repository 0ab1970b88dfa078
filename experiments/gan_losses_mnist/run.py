"""DCGAN, WGAN-GP, SNGAN (hinge + spectral norm) and the conditional GAN on MNIST, same budget.

    python -m experiments.gan_losses_mnist.run [overrides...]

Runs `python -m src.train -m experiment=gan_losses_mnist` (4 jobs), then writes results.json,
results.md, samples.png and README.md in this folder. Scores are the test-time scores of each
job's best checkpoint (lowest `val/fid`), from its metrics.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from experiments.common import Job, machine_description, markdown_table, run_multirun

HERE = Path(__file__).resolve().parent
SCORES = ["test/fid", "test/kid", "test/is", "test/precision", "test/recall", "test/density", "test/coverage"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="where the runs go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=HERE, help="where the results go")
    parser.add_argument(
        "overrides", nargs="*", help="extra overrides, e.g. trainer.max_epochs=1 for a dry run"
    )
    args = parser.parse_args()
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="gan_losses_mnist_"))
    jobs, seconds = run_multirun(["experiment=gan_losses_mnist", *args.overrides], log_dir)
    rows = [
        {
            "model": job.overrides["model"],
            "generator_updates": job.metrics["global_step"],
            "epochs": job.metrics["epoch"],
            **{k: job.metrics.get(k) for k in SCORES},
        }
        for job in jobs
    ]
    results = {
        "machine": machine_description(),
        "wall_seconds": seconds,
        "data_source": jobs[0].metrics.get("data_source"),
        "extractor": jobs[0].metrics.get("protocol", {}).get("test", {}).get("extractor"),
        "overrides": args.overrides,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown_table(
        ["model", "G updates", *SCORES],
        [[r["model"], r["generator_updates"], *(r[k] for k in SCORES)] for r in rows],
    )
    (args.out / "results.md").write_text(table)
    sample_figure(jobs, args.out / "samples.png")
    (args.out / "README.md").write_text(readme(table, results))
    print(table)


def tested_checkpoint(job: Job) -> Path:
    return Path(
        job.metrics["protocol"].get("tested_checkpoint") or job.directory / "checkpoints" / "last.ckpt"
    )


def sample_figure(jobs: list[Job], path: Path) -> None:
    """64 samples of each job's tested checkpoint (EMA generator where there is one), fixed seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    from src.models.base import GenerativeModule

    fig, axes = plt.subplots(1, len(jobs), figsize=(3 * len(jobs), 3.3), dpi=110)
    for ax, job in zip(axes, jobs):
        model = GenerativeModule.from_checkpoint(tested_checkpoint(job))
        labels = torch.arange(64) % 8 if model.num_classes else None
        images = model.sample(64, labels=labels, generator=torch.Generator().manual_seed(0)).cpu()
        ax.imshow(make_grid(images, nrow=8, padding=1).permute(1, 2, 0).numpy())
        ax.set_title(f"model={job.overrides['model']}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def readme(table: str, results: dict) -> str:
    best = min(results["rows"], key=lambda r: r["test/fid"])
    most = max(r["generator_updates"] for r in results["rows"])
    fewer = [r for r in results["rows"] if r["generator_updates"] < most]
    updates = ""
    if fewer:
        names = ", ".join(f"`{r['model']}` ({r['generator_updates']})" for r in fewer)
        updates = (
            f"Generator updates (n_critic) differ: {names} against {most} for the others. The models are "
            "compared at equal discriminator work, not equal generator work; fewer generator updates mean "
            "shorter training of the generator."
        )
    return f"""# GAN losses on MNIST

Reproduce: `python -m experiments.gan_losses_mnist.run` (it runs
`python -m src.train -m experiment=gan_losses_mnist`, 4 jobs, and rewrites this file; extra
overrides: `{" ".join(results["overrides"]) or "none"}`).

Setup (`conf/experiment/gan_losses_mnist.yaml`): `data=mnist` (data source:
`{results["data_source"]}`), batch 64, 10 epochs for every model, i.e. the same number of real
batches and discriminator updates (`n_critic=5` for wgan_gp, sngan and cgan gives them a fifth of
the generator updates), seed 12345, each model's own optimizer settings (`conf/model/`). The
checkpoint with the lowest `val/fid` (2,000 samples vs the validation split, every 5 epochs) is
tested: 10,000 samples against the whole test split, in the feature space of the framework's
domain classifier (`metrics=domain`, extractor `{results["extractor"]}`); FID and KID are
comparable only under that extractor's hash (recorded in each job's metrics.json), not with
Inception-based figures in the literature.

Measured on: {results["machine"]}. Wall time for the 4 jobs: {results["wall_seconds"] / 60:.1f} min.

{table}
Lowest test FID under this budget: `model={best["model"]}`. {updates}

![64 samples of each model's tested checkpoint (cgan: digits 0-7, one per column)](samples.png)
"""


if __name__ == "__main__":
    main()
