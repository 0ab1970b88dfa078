"""Gap filling on the bundled MNIST subset: rare classes, small data, missing pixels.

    python -m experiments.gap_filling.run --part a      # (a) rare classes
    python -m experiments.gap_filling.run --part b      # (b) small data
    python -m experiments.gap_filling.run --part c      # (c) missing pixels
    python -m experiments.gap_filling.run --smoke       # every part at toy budgets, into a temp dir

Each part runs the framework's own commands (``src.train``, ``src.generate``,
``src.verify_dataset``, ``src.evaluate_dataset augmentation.enabled=true``, ``src.inpaint``) and
stores its results in ``results.json``; README.md is rewritten from all parts measured so far.
``--threads`` sets the threads of every command (default 1: two parts can run side by side on
two cores). ``--smoke`` writes to a temporary directory unless ``--out`` is given, never here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.common import CGAN_RECIPE, ROOT, machine_description, markdown_table

HERE = Path(__file__).resolve().parent
# The cGAN recipe of experiments/synthetic_mnist (DCGAN networks, one D update per G update, Adam 8e-4).
CGAN = CGAN_RECIPE
CONDITIONAL = {"cgan": CGAN, "cvae": ["model=cvae"]}
UNCONDITIONAL = {"vae": ["model=vae"], "dcgan": ["model=dcgan"]}
RARE = {3: 20, 5: 20, 8: 20}
SMALL = (10, 50)
MASKS = {"center": ["mask=center", "mask_size=14"], "pixels": ["mask=pixels", "mask_fraction=0.5"]}
TRAIN = ["data=mnist", "seed=12345", "trainer.enable_progress_bar=false", "logger=csv"]
# As experiments/synthetic_mnist: val/fid every 5 epochs picks best.ckpt ((a) and (c)).
EVERY_5 = [
    "metrics.every_n_epochs=5",
    "+callbacks.model_checkpoint.every_n_epochs=5",  # not in conf/callbacks/default.yaml: added
    "callbacks.samples.every_n_epochs=5",
]

FULL = {
    "epochs": 30,
    "steps_small": 1500,
    "seeds": [0, 1, 2],
    "ratios": [0.5, 1, 2, 4],
    "classifier_epochs": 10,
    "min_steps": 200,
    "inpaint": [],
    "every": EVERY_5,
}
SMOKE = {
    "epochs": 1,
    "steps_small": 6,
    "seeds": [0],
    "ratios": [0.5, 1],
    "classifier_epochs": 1,
    "min_steps": 5,
    "inpaint": ["n=24", "steps=3"],
    "every": [],
    "train": [
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "metrics.n_fake_val=64",
        "metrics.n_fake_test=64",
        "metrics.extractor_epochs=1",
        "metrics.kid_subsets=10",
        "callbacks.samples.n=16",
    ],
}


class Study:
    def __init__(self, log_dir: Path, threads: int, budget: dict[str, Any]) -> None:
        self.log_dir = log_dir
        self.budget = budget
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
        }

    def run(self, module: str, args: list[str], run_dir: Path) -> dict[str, Any]:
        """``python -m <module> <args>`` into ``run_dir``; returns its metrics.json."""
        command = [
            sys.executable,
            "-m",
            module,
            *args,
            f"hydra.run.dir={run_dir}",
            f"paths.log_dir={self.log_dir}",
        ]
        print("+", " ".join(command), flush=True)
        subprocess.run(command, cwd=ROOT, env=self.env, check=True)
        return json.loads((run_dir / "metrics.json").read_text())

    def train(self, name: str, overrides: list[str], extra: list[str]) -> tuple[Path, dict[str, Any]]:
        run_dir = self.log_dir / name / "train"
        budget = self.budget.get("train", [])
        metrics = self.run("src.train", [*TRAIN, *overrides, *extra, *budget], run_dir)
        best = run_dir / "checkpoints" / "best.ckpt"
        return (best if best.is_file() else run_dir / "checkpoints" / "last.ckpt"), metrics

    def augmentation(self, name: str, ckpt: Path, counts: list[int], fill_check: bool) -> dict[str, Any]:
        """Pool export (class-balanced; enough for the largest ratio and for the fill to the largest
        class), a fill export (verified), the augmentation report."""
        pool = self.log_dir / name / "pool"
        n_real = sum(counts)
        n_pool = max(64, math.ceil(max(self.budget["ratios"]) * n_real), len(counts) * max(counts))
        self.run(
            "src.generate",
            [f"ckpt_path={ckpt}", f"n={n_pool}", f"out_dir={pool}", "score=false"],
            self.log_dir / name / "gen_pool",
        )
        fill = None
        if fill_check:
            filled = self.log_dir / name / "filled"
            self.run(
                "src.generate",
                [f"ckpt_path={ckpt}", "fill=balance", f"out_dir={filled}", "score=false"],
                self.log_dir / name / "gen_fill",
            )
            subprocess.run(
                [sys.executable, "-m", "src.verify_dataset", str(filled)], cwd=ROOT, env=self.env, check=True
            )
            fill = json.loads((filled / "manifest.json").read_text())["sources"]
        args = [
            f"synthetic={pool}",
            "scores=false",
            "augmentation.enabled=true",
            f"augmentation.seeds=[{','.join(map(str, self.budget['seeds']))}]",
            f"augmentation.ratios=[{','.join(map(str, self.budget['ratios']))}]",
            f"classifier.epochs={self.budget['classifier_epochs']}",
            f"augmentation.min_steps={self.budget['min_steps']}",
        ]
        self.run("src.evaluate_dataset", args, self.log_dir / name / "report")
        report = json.loads(Path(f"{pool}.augmentation.json").read_text())
        return {"report": report, "fill_export": fill, "pool": str(pool)}


def part_a(study: Study) -> dict[str, Any]:
    subset = "data.subset.per_class={" + ",".join(f"{k}:{v}" for k, v in RARE.items()) + "}"
    out = {"subset": subset, "models": {}}
    for name, overrides in CONDITIONAL.items():
        epochs = [
            f"trainer.max_epochs={study.budget['epochs']}",
            "data.batch_size=64",
            *study.budget["every"],
        ]
        ckpt, metrics = study.train(f"a/{name}", overrides, [subset, *epochs])
        counts = metrics["data"]["train_class_counts"]
        out["models"][name] = {
            "train": _train_facts(metrics, ckpt),
            **study.augmentation(f"a/{name}", ckpt, counts, True),
        }
    return out


def part_b(study: Study) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": {}}
    for per_class in SMALL:
        n, batch = per_class * 10, 32 if per_class * 10 < 320 else 64
        steps_per_epoch = max(1, n // batch)
        every = max(1, math.ceil(300 / steps_per_epoch))  # about 5 validations per run
        extra = [
            f"data.subset.per_class={per_class}",
            f"data.batch_size={batch}",
            f"trainer.max_steps={study.budget['steps_small']}",
            "trainer.max_epochs=-1",
            f"trainer.check_val_every_n_epoch={every}",
        ]
        for name, overrides in CONDITIONAL.items():
            key = f"b/{per_class}/{name}"
            ckpt, metrics = study.train(key, overrides, extra)
            out["sizes"].setdefault(str(per_class), {})[name] = {
                "train": _train_facts(metrics, ckpt),
                **study.augmentation(key, ckpt, metrics["data"]["train_class_counts"], False),
            }
    return out


def part_c(study: Study, out_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"models": {}}
    for name, overrides in UNCONDITIONAL.items():
        ckpt, metrics = study.train(
            f"c/{name}", overrides, [f"trainer.max_epochs={study.budget['epochs']}", "data.batch_size=64"]
        )
        out["models"][name] = {"train": _train_facts(metrics, ckpt), "masks": {}}
        for mask, mask_args in MASKS.items():
            target = study.log_dir / "c" / name / mask
            args = [
                f"ckpt_path={ckpt}",
                *mask_args,
                "split=test",
                f"out_dir={target}",
                *study.budget["inpaint"],
            ]
            study.run("src.inpaint", args, study.log_dir / "c" / name / f"inpaint_{mask}")
            manifest = json.loads((target / "manifest.json").read_text())
            figure = out_dir / f"c_{name}_{mask}.png"
            shutil.copyfile(target.parent / f"{mask}.preview.png", figure)
            out["models"][name]["masks"][mask] = {
                **manifest["inpainting"],
                "n": manifest["n"],
                "figure": figure.name,
            }
    return out


def _train_facts(metrics: dict[str, Any], ckpt: Path) -> dict[str, Any]:
    keep = ("val/fid", "test/fid", "val/elbo", "test/elbo", "global_step", "epoch")
    return {
        "checkpoint": str(ckpt),
        "data": metrics.get("data"),
        **{k: metrics[k] for k in keep if k in metrics},
    }


# ------------------------------------------------------------------------------------------ README
def _pm(cell: dict[str, Any] | None, key: str) -> str:
    if not cell or key not in cell:
        return ""
    return f"{cell[key]['mean']:.3f} ± {cell[key]['std']:.3f}"


def _arms_table(report: dict[str, Any]) -> str:
    rows = []
    for arm, cell in report["arms"].items():
        rows.append(
            [arm + (f" ({cell['with']})" if "with" in cell else ""), cell["n_train"], _pm(cell, "accuracy"),
             _pm(cell, "balanced_accuracy"), _pm(cell, "scarce_recall"), f"{cell['nas']:+.3f}" if "nas" in cell else ""]
        )  # fmt: skip
    table = markdown_table(
        ["arm", "train images", "accuracy", "balanced accuracy", "rare-class recall", "NAS"], rows
    )
    if report["skipped"]:
        table += "\nNot run: " + "; ".join(f"{k} ({v})" for k, v in report["skipped"].items()) + ".\n"
    return table


def collect_figures(results: dict[str, Any], out: Path) -> None:
    """Copy each augmentation report's plot (accuracy against the synthetic ratio, one line per arm,
    written by ``src.evaluate_dataset`` beside the pool) here, and record its name in the entry."""
    entries = [
        (f"a_{name}", e)
        for name, e in results["parts"].get("a", {}).get("result", {}).get("models", {}).items()
    ]
    for per_class, models in results["parts"].get("b", {}).get("result", {}).get("sizes", {}).items():
        entries += [(f"b_{per_class}_{name}", e) for name, e in models.items()]
    for key, entry in entries:
        plot = Path(f"{entry['pool']}.augmentation.png")
        if plot.is_file():
            shutil.copyfile(plot, out / f"{key}_augmentation.png")
            entry["figure"] = f"{key}_augmentation.png"


def _figure(entry: dict[str, Any], caption: str) -> str:
    return f"![{caption}]({entry['figure']})\n\n" if entry.get("figure") else ""


def _status(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "not met")


def section_a(result: dict[str, Any] | None) -> str:
    head = "## (a) Rare classes\n\n"
    if not result:
        return head + "Not measured yet: `python -m experiments.gap_filling.run --part a`.\n"
    text = head + (
        f"Skewed split: `{result['subset']}` (three classes cut to 20 training images, the rest whole). "
        "Each model is trained on it, exports a class-balanced pool of 4x the real count, and a "
        "`fill=balance` export (real + synthetic, verified); the augmentation report trains the classifier "
        "on every arm, tested on the whole real test split.\n\n"
    )
    for name, entry in result["models"].items():
        report = entry["report"]
        arms = report["arms"]
        real = arms["real"]
        fill = arms.get("real+fill")
        classic = arms.get("real+classic")
        recall_ok = bal_ok = None
        if fill:
            recall_ok = fill["scarce_recall"]["mean"] >= real["scarce_recall"]["mean"] + 0.10
            bal_ok = fill["balanced_accuracy"]["mean"] >= real["balanced_accuracy"]["mean"] + 0.02 and (
                classic is None or fill["balanced_accuracy"]["mean"] >= classic["balanced_accuracy"]["mean"]
            )
        fill_export = entry["fill_export"] or {}
        text += (
            f"### {name}\n\nReal training images per class: {report['real_class_counts']}. The `fill=balance` export "
            f"holds {fill_export.get('real', {}).get('n')} real + {fill_export.get('synthetic', {}).get('n')} synthetic "
            f"images (synthetic per class: {fill_export.get('synthetic', {}).get('per_class')}).\n\n"
        )
        text += _arms_table(report) + "\n"
        text += _figure(entry, f"{name}: accuracy against the synthetic ratio, one line per arm")
        text += (
            f"Targets: rare-class recall of real + fill >= real only + 10 points: **{_status(recall_ok)}**; "
            f"balanced accuracy >= real only + 2 points and not below real + classic: **{_status(bal_ok)}**.\n\n"
        )
    return text


def section_b(result: dict[str, Any] | None) -> str:
    head = "## (b) Small data\n\n"
    if not result:
        return head + "Not measured yet: `python -m experiments.gap_filling.run --part b`.\n"
    text = (
        head
        + "Every class cut to 10 or 50 training images; accuracy on the real test split against the synthetic ratio.\n\n"
    )
    for per_class, models in result["sizes"].items():
        for name, entry in models.items():
            report = entry["report"]
            arms = report["arms"]
            text += f"### {per_class} images per class, {name}\n\n" + _arms_table(report) + "\n"
            text += _figure(entry, f"{per_class} per class, {name}: accuracy against the synthetic ratio")
            if per_class == "10" and "real+synthetic x1" in arms:
                ok = arms["real+synthetic x1"]["accuracy"]["mean"] > arms["real"]["accuracy"]["mean"]
                text += f"Target (10 per class: real + synthetic x1 beats real only): **{_status(ok)}**.\n\n"
    return text


def section_c(result: dict[str, Any] | None) -> str:
    head = "## (c) Missing pixels\n\n"
    if not result:
        return head + "Not measured yet: `python -m experiments.gap_filling.run --part c`.\n"
    rows, figures, targets = [], [], []
    for name, entry in result["models"].items():
        for mask, block in entry["masks"].items():
            scores = block["scores"]
            acc = scores.get("classifier_accuracy", {})
            for method in ("model", "mean_fill", "nearest_neighbour_fill"):
                rows.append(
                    [name, mask, f"{block['method']}" if method == "model" else method, scores[method]["psnr"],
                     scores[method]["mse"], scores[method].get("ssim"), acc.get("original"), acc.get("masked"),
                     acc.get(method), acc.get(f"{method}_recovered")]
                )  # fmt: skip
            figures.append(
                f"![{name} {mask}]({block['figure']})  \n{name}, {mask}: rows "
                + ", ".join(
                    block.get("preview_rows")
                    or ["original", "masked", block["method"], "mean fill", "nearest neighbour"]
                )
            )
            if mask == "center":
                best = scores["model"]["psnr"] > max(
                    scores["mean_fill"]["psnr"], scores["nearest_neighbour_fill"]["psnr"]
                )
                recovered = acc.get("model_recovered")
                targets.append(
                    f"{name}, centre: PSNR above both baselines **{_status(best)}**; accuracy recovered >= 80 %: "
                    f"**{_status(None if recovered is None else recovered >= 0.8)}**"
                )
    table = markdown_table(
        [
            "model",
            "mask",
            "fill",
            "PSNR (holes)",
            "MSE (holes)",
            "SSIM",
            "acc. original",
            "acc. masked",
            "acc. filled",
            "recovered",
        ],
        rows,
    )
    n = next(iter(next(iter(result["models"].values()))["masks"].values())).get("n")
    return (
        head
        + f"Test split ({n} images), masks seeded (seed 0). "
        + "\n\n"
        + table
        + "\n"
        + "\n".join(f"- {t}" for t in targets)
        + "\n\n"
        + "\n\n".join(figures)
        + "\n"
    )


def readme(results: dict[str, Any]) -> str:
    parts = results.get("parts", {})
    timing = "; ".join(
        f"({k}) {v['wall_seconds'] / 60:.1f} min, every command with {v['threads']} thread(s)"
        + (" (SMOKE budgets: the numbers only show that the pipeline runs)" if v["smoke"] else "")
        for k, v in parts.items()
    )
    machine = next((v["machine"] for v in parts.values()), "")
    return f"""# Gap filling: rare classes, small data, missing pixels

Reproduce, one command per part (each rewrites this file from `results.json`):

```
python -m experiments.gap_filling.run --part a
python -m experiments.gap_filling.run --part b
python -m experiments.gap_filling.run --part c
```

Data: the bundled 5,000-image MNIST subset (4,000 / 500 / 500 train / val / test, `data.split_seed=0`).
Models train with seed 12345; (a) and (b) use the conditional models of `experiments/synthetic_mnist`
(cGAN on DCGAN networks, cVAE), (c) the unconditional `vae` and `dcgan`. The augmentation report is
`python -m src.evaluate_dataset synthetic=<pool> augmentation.enabled=true` (classifier: the framework's
domain classifier, {FULL["classifier_epochs"]} epochs, epoch chosen on the val split, seeds {FULL["seeds"]}, mean ± std);
NAS is the Naive Augmentation Score (Ravuri & Vinyals 2019), accuracy minus real-only accuracy.

Measured: {timing or "nothing yet"}{f". Machine: {machine} (the study process)" if machine else ""}.
A part's wall time is its own, measured while other parts may run beside it on the same cores.

{section_a(parts.get("a", {}).get("result"))}
{section_b(parts.get("b", {}).get("result"))}
{section_c(parts.get("c", {}).get("result"))}"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["a", "b", "c", "all"], default="all")
    parser.add_argument("--smoke", action="store_true", help="toy budgets, to check the pipeline (minutes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-dir", type=Path, default=None, help="where the runs go (default: a temp dir)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results.json, README.md, figures (default: here; --smoke: a temp dir)",
    )
    parser.add_argument(
        "--readme-only",
        action="store_true",
        help="rewrite README.md (and copy the plots) from results.json, run nothing",
    )
    args = parser.parse_args()
    if args.readme_only:
        out = args.out or HERE
        results = json.loads((out / "results.json").read_text())
        collect_figures(results, out)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (out / "README.md").write_text(readme(results))
        return
    out = args.out or (Path(tempfile.mkdtemp(prefix="gap_filling_smoke_")) if args.smoke else HERE)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="gap_filling_runs_"))
    out.mkdir(parents=True, exist_ok=True)
    study = Study(log_dir, args.threads, SMOKE if args.smoke else FULL)
    results_path = out / "results.json"
    for part in ("a", "b", "c") if args.part == "all" else (args.part,):
        started = time.perf_counter()
        result = {"a": part_a, "b": part_b}[part](study) if part != "c" else part_c(study, out)
        # Re-read: parts run side by side (one core each) share results.json; keep what the others wrote.
        results = json.loads(results_path.read_text()) if results_path.is_file() else {"parts": {}}
        results["parts"][part] = {
            "result": result,
            "wall_seconds": time.perf_counter() - started,
            "machine": machine_description(),
            "threads": args.threads,
            "smoke": args.smoke,
            "log_dir": str(log_dir),
        }
        collect_figures(results, out)
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        (out / "README.md").write_text(readme(results))
        print(
            f"part ({part}): {results['parts'][part]['wall_seconds'] / 60:.1f} min; results in {out}",
            flush=True,
        )


if __name__ == "__main__":
    main()
