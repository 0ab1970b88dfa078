"""Gap filling on the bundled MNIST subset: rare classes, small data, missing pixels.

    python -m experiments.gap_filling.run --part a      # (a) rare classes: about 65 min on one thread
    python -m experiments.gap_filling.run --part b      # (b) small data: about 45 min on one thread
    python -m experiments.gap_filling.run --part c      # (c) missing pixels
    python -m experiments.gap_filling.run --smoke --part a   # toy budgets, into a temp dir

Each part runs the framework's own commands (``src.train``, ``src.generate``,
``src.verify_dataset``, ``src.evaluate_dataset augmentation.enabled=true``, ``src.inpaint``) and
stores its results in ``results.json``; README.md is rewritten from all parts measured so far.
Parts (a) and (b) are meant to run side by side on two cores (``--threads 1``, the default); the
times above are estimates from the parts' earlier runs and the classifier's steps, not measured end to
end. ``--epochs 15`` takes about 9 min off (a), each variant after the first about 6 min per model.

The augmentation reports of (a) and (b) run once per *variant* of the protocol (``--variants``,
``labels[:min_confidence[:synthetic_weight]]``): the first with every arm (ratios, classic
augmentation, baselines), the others with the arms whose synthetic images the variant changes (the
fill on a skewed split, ``x1`` on a balanced one) beside the real-only arm and the baselines. The
budget options (``--epochs``, ``--steps-small``, ``--seeds``, ``--ratios``, ``--variants``,
``--sizes``, ``--models``, ``--classifier-epochs``) default to the study's budget;
``--reuse`` skips every command whose run directory under ``--log-dir`` already holds a finished
``metrics.json`` (to resume a part). ``--smoke`` writes to a temporary directory unless ``--out``
is given, never here.
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
MASKS = {"center": ["mask=center", "mask_size=14"], "pixels": ["mask=pixels", "mask_fraction=0.5"]}
# Per-model src.inpaint options of (c). The GAN fits k latents per image by optimisation; with the
# default 4 random starts per draw, 8 draws are 32 fits of 300 steps per image, and the first 250 test
# images were not done after 30 min on one CPU thread. One start per draw keeps the 8 draws (the
# posterior mean) at about 20 min per mask.
INPAINT = {"vae": [], "dcgan": ["restarts=1"]}
TRAIN = ["data=mnist", "seed=12345", "trainer.enable_progress_bar=false", "logger=csv"]
# As experiments/synthetic_mnist: val/fid every 5 epochs picks best.ckpt ((a) and (c)).
EVERY_5 = [
    "metrics.every_n_epochs=5",
    "+callbacks.model_checkpoint.every_n_epochs=5",  # not in conf/callbacks/default.yaml: added
    "callbacks.samples.every_n_epochs=5",
]
BASELINES = ("real+oversample", "real+class_weights", "real+smote")
TARGET_A_POINTS = 0.05  # (a): the best fill arm's rare-class recall >= real only + 5 points

FULL = {
    "epochs": 30,  # (c)'s unconditional models
    "epochs_rare": 20,  # (a)'s conditional models (val FID every 5 epochs picks best.ckpt)
    "steps_small": 1500,
    "seeds": [0, 1, 2],
    "ratios": [1, 4],
    "classifier_epochs": 10,
    "min_steps": 200,
    "real_share": 0.5,
    "variants": ["given", "teacher_hard:0.5"],
    "sizes": [10],
    "models": list(CONDITIONAL),
    "pool": 4,
    "inpaint": [],
    "every": EVERY_5,
}
SMOKE = {
    **FULL,
    "epochs": 1,
    "epochs_rare": 1,
    "steps_small": 6,
    "seeds": [0],
    "ratios": [1],
    "classifier_epochs": 1,
    "min_steps": 5,
    "pool": 1,
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


def parse_variant(spec: str) -> dict[str, Any]:
    """``labels[:min_confidence[:synthetic_weight]]`` -> the variant's options, key and label."""
    parts = spec.split(":")
    if parts[0] not in ("given", "teacher_hard", "teacher_soft") or len(parts) > 3:
        raise SystemExit(f"--variants: {spec!r} is not labels[:min_confidence[:synthetic_weight]]")
    confidence = float(parts[1]) if len(parts) > 1 else 0.0
    weight = float(parts[2]) if len(parts) > 2 else 1.0
    label = (
        parts[0]
        + (f", conf {confidence:g}" if confidence else "")
        + (f", weight {weight:g}" if weight != 1 else "")
    )
    return {
        "labels": parts[0],
        "min_confidence": confidence,
        "synthetic_weight": weight,
        "key": spec.replace(":", "_"),
        "label": label,
    }


class Study:
    def __init__(self, log_dir: Path, threads: int, budget: dict[str, Any], reuse: bool = False) -> None:
        self.log_dir = log_dir
        self.budget = budget
        self.reuse = reuse
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
        }

    def run(self, module: str, args: list[str], run_dir: Path) -> dict[str, Any]:
        """``python -m <module> <args>`` into ``run_dir``; returns its metrics.json (with ``--reuse``, a
        finished run's is read instead of running the command again)."""
        done = run_dir / "metrics.json"
        if self.reuse and done.is_file() and json.loads(done.read_text()).get("status") == "ok":
            print(f"= reusing {run_dir}", flush=True)
            return json.loads(done.read_text())
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
        return json.loads(done.read_text())

    def train(self, name: str, overrides: list[str], extra: list[str]) -> tuple[Path, dict[str, Any]]:
        run_dir = self.log_dir / name / "train"
        budget = self.budget.get("train", [])
        metrics = self.run("src.train", [*TRAIN, *overrides, *extra, *budget], run_dir)
        best = run_dir / "checkpoints" / "best.ckpt"
        return (best if best.is_file() else run_dir / "checkpoints" / "last.ckpt"), metrics

    def augmentation(self, name: str, ckpt: Path, counts: list[int], fill_check: bool) -> dict[str, Any]:
        """Pool export (class-balanced: enough for the largest ratio, ``pool`` x the real count, and the
        fill to the largest class), a fill export (verified), one augmentation report per variant."""
        pool = self.log_dir / name / "pool"
        n_real = sum(counts)
        n_pool = max(
            64,
            math.ceil(max([*self.budget["ratios"], self.budget["pool"]]) * n_real),
            len(counts) * max(counts),
        )
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
        skewed = max(counts) != min(counts)
        variants = {}
        for index, spec in enumerate(self.budget["variants"]):
            variant = parse_variant(spec)
            # The first variant runs every arm; the others only what their labels change.
            ratios = self.budget["ratios"] if index == 0 else ([] if skewed else [1])
            args = [
                f"synthetic={pool}",
                "scores=false",
                "augmentation.enabled=true",
                f"augmentation.seeds=[{','.join(map(str, self.budget['seeds']))}]",
                f"augmentation.ratios=[{','.join(map(str, ratios))}]",
                f"augmentation.classic={str(index == 0).lower()}",
                f"augmentation.real_share={self.budget['real_share']}",
                f"augmentation.synthetic_labels={variant['labels']}",
                f"augmentation.min_confidence={variant['min_confidence']}",
                f"augmentation.synthetic_weight={variant['synthetic_weight']}",
                f"classifier.epochs={self.budget['classifier_epochs']}",
                f"augmentation.min_steps={self.budget['min_steps']}",
            ]
            run_dir = self.log_dir / name / f"report_{variant['key']}"
            kept = run_dir / "augmentation.json"
            if not (self.reuse and kept.is_file()):
                self.run("src.evaluate_dataset", args, run_dir)
                # Every report is written beside the pool: keep each variant's in its run directory.
                for ext in ("json", "md", "png"):
                    shutil.copyfile(Path(f"{pool}.augmentation.{ext}"), run_dir / f"augmentation.{ext}")
            variants[variant["key"]] = {
                "variant": variant,
                "report": json.loads(kept.read_text()),
                "plot": str(run_dir / "augmentation.png"),
            }
        return {"fill_export": fill, "pool": str(pool), "variants": variants}


def part_a(study: Study) -> dict[str, Any]:
    subset = "data.subset.per_class={" + ",".join(f"{k}:{v}" for k, v in RARE.items()) + "}"
    out = {"subset": subset, "models": {}}
    for name in study.budget["models"]:
        epochs = [
            f"trainer.max_epochs={study.budget['epochs_rare']}",
            "data.batch_size=64",
            *study.budget["every"],
        ]
        ckpt, metrics = study.train(f"a/{name}", CONDITIONAL[name], [subset, *epochs])
        counts = metrics["data"]["train_class_counts"]
        out["models"][name] = {
            "train": _train_facts(metrics, ckpt),
            **study.augmentation(f"a/{name}", ckpt, counts, True),
        }
    return out


def part_b(study: Study) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": {}}
    for per_class in study.budget["sizes"]:
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
        for name in study.budget["models"]:
            key = f"b/{per_class}/{name}"
            ckpt, metrics = study.train(key, CONDITIONAL[name], extra)
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
                *INPAINT[name],
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
    out["command_seconds"] = command_seconds(out)
    return out


def command_seconds(result: dict[str, Any]) -> float:
    """Seconds of (c)'s own work: every model's fit and test, every inpainting. Unlike the part's wall
    time, it counts runs that ``--reuse`` skipped, so a resumed part still shows what it costs."""
    total = 0.0
    for entry in result["models"].values():
        timing = entry["train"].get("timing") or {}
        total += timing.get("fit_s", 0.0) + timing.get("test_s", 0.0)
        total += sum(block.get("seconds", 0.0) for block in entry["masks"].values())
    return total


def _train_facts(metrics: dict[str, Any], ckpt: Path) -> dict[str, Any]:
    keep = ("val/fid", "test/fid", "val/elbo", "test/elbo", "global_step", "epoch", "timing")
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


def _variants(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The entry's reports per variant (an entry measured before variants: its one report)."""
    if "variants" in entry:
        return entry["variants"]
    label = "given (equal steps, uniform batches: the protocol before issue 29)"
    return {"given": {"variant": {"label": label, "labels": "given"}, "report": entry["report"]}}


def merged_arms(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every arm of the first variant's report, then the arms with generated images of the others;
    arms with generated images named with their variant when there are several."""
    variants = list(_variants(entry).values())
    several = len(variants) > 1
    arms: dict[str, dict[str, Any]] = {}
    for index, variant in enumerate(variants):
        for name, cell in variant["report"]["arms"].items():
            if index and not _generated(name):
                continue  # the same real-only, CAS and baseline training as the first report
            arms[f"{name} [{variant['variant']['label']}]" if _generated(name) and several else name] = cell
    return arms


def _generated(arm: str) -> bool:
    """An arm of real and generated images (the ``synthetic`` arm, generated images only, is the CAS)."""
    return arm != "synthetic" and ("synthetic" in arm or arm == "real+fill")


def _arms_table(entry: dict[str, Any]) -> str:
    rows = []
    for arm, cell in merged_arms(entry).items():
        chosen = cell.get("chosen_epoch")
        rows.append(
            [arm + (f" ({cell['with']})" if "with" in cell else ""), cell["n_train"], cell.get("steps", ""),
             f"{chosen['mean']:.1f}" if chosen else "", _pm(cell, "accuracy"), _pm(cell, "macro_f1"),
             _pm(cell, "scarce_recall"), f"{cell['nas']:+.3f}" if "nas" in cell else ""]
        )  # fmt: skip
    table = markdown_table(
        ["arm", "train images", "steps", "chosen epoch", "accuracy", "macro F1", "rare-class recall", "NAS"],
        rows,
    )
    variants = list(_variants(entry).values())
    skipped = {
        (f"{name} [{variant['variant']['label']}]" if len(variants) > 1 and _generated(name) else name): why
        for index, variant in enumerate(variants)
        for name, why in variant["report"]["skipped"].items()
        if index == 0 or (_generated(name) and variants[0]["report"]["skipped"].get(name) != why)
    }
    if skipped:
        table += "\nNot run: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + ".\n"
    return table


def _protocol(entry: dict[str, Any]) -> str:
    """One paragraph: the protocol of the entry's reports (from the first one) and each variant's labels."""
    first = next(iter(_variants(entry).values()))["report"]
    protocol = first.get("protocol")
    if not protocol:
        return (
            "Protocol (measured before the current one; re-run the part): every arm the same number of "
            "steps, batches drawn uniformly from real + synthetic, the generator's labels, no baselines.\n\n"
        )
    budget = protocol["budget"]
    text = (
        f"Protocol: batches of {protocol['batch']} with {protocol['real_per_batch']} real images in every batch "
        f"of an arm with synthetic images (real_share {protocol['real_share']:g}); real only "
        f"{budget['real_only_steps']} steps ({budget['real_only_passes']:.1f} passes), every other arm enough steps "
        f"for its real images to get as many passes; weights chosen on the val split every {budget['check_every']} "
        f"steps; seeds {first['seeds']}. Teacher (real-only classifier, seed {protocol['teacher']['seed']}) val "
        f"accuracy {protocol['teacher']['val_accuracy']:.3f}.\n\n"
    )
    scarce = first["scarce_classes"]
    for variant in _variants(entry).values():
        report = variant["report"]
        rows = report.get("labels", {}).get("per_class", [])
        rare = [r for r in rows if r["class"] in scarce] if scarce else rows
        if rare:
            facts = ", ".join(
                f"class {r['class']}: teacher agrees {r['agreement']:.2f}, kept {r['kept_share']:.2f}"
                for r in rare
            )
            text += f"- {variant['variant']['label']}: {facts}.\n"
    return text + "\n"


def _beyond(a: dict[str, Any], b: dict[str, Any], margin: float = 0.0) -> tuple[bool, float]:
    """A above B + margin beyond the seed spread: mean - std of A > mean + std of B + margin."""
    gap = (a["mean"] - a["std"]) - (b["mean"] + b["std"] + margin)
    return gap > 0, gap


def _best(arms: dict[str, dict[str, Any]], names: list[str], key: str) -> tuple[str, dict[str, Any]] | None:
    present = [n for n in names if key in arms[n]]
    if not present:
        return None
    name = max(present, key=lambda n: arms[n][key]["mean"])
    return name, arms[name][key]


def target_a(entry: dict[str, Any]) -> dict[str, Any]:
    """(a): the best fill arm's rare-class recall >= real only + 5 points and >= the best baseline,
    beyond the seed spread (the best arm is picked by its test mean: an optimistic pick)."""
    arms = merged_arms(entry)
    real = arms["real"]["scarce_recall"]
    fills = [n for n in arms if _generated(n.split(" [")[0])]
    best = _best(arms, fills, "scarce_recall")
    baseline = _best(arms, [n for n in BASELINES if n in arms], "scarce_recall")
    if best is None:
        return {"status": None}
    over_real, gap_real = _beyond(best[1], real, TARGET_A_POINTS)
    over_base, gap_base = _beyond(best[1], baseline[1]) if baseline else (None, math.nan)
    return {
        "status": over_base if over_real else False,  # None: no baseline measured
        "best": best,
        "real": real,
        "baseline": baseline,
        "over_real": (over_real, gap_real),
        "over_baseline": (over_base, gap_base),
    }


def target_b(entry: dict[str, Any]) -> dict[str, Any]:
    """(b): a real + synthetic arm's accuracy beats real only beyond the seed spread (best arm by test mean)."""
    arms = merged_arms(entry)
    best = _best(arms, [n for n in arms if n.startswith("real+synthetic")], "accuracy")
    if best is None:
        return {"status": None}
    ok, gap = _beyond(best[1], arms["real"]["accuracy"])
    return {"status": ok, "best": best, "real": arms["real"]["accuracy"], "gap": gap}


def _margin(gap: float) -> str:
    return "n/a" if math.isnan(gap) else f"{gap:+.3f}"


def _s(spread: dict[str, Any]) -> str:
    return f"{spread['mean']:.3f} ± {spread['std']:.3f}"


def collect_figures(results: dict[str, Any], out: Path) -> None:
    """Copy each augmentation report's plot (accuracy and rare-class recall per arm, written by
    ``src.evaluate_dataset``) here, and record its name in the variant's entry."""
    entries = [
        (f"a_{name}", e)
        for name, e in results["parts"].get("a", {}).get("result", {}).get("models", {}).items()
    ]
    for per_class, models in results["parts"].get("b", {}).get("result", {}).get("sizes", {}).items():
        entries += [(f"b_{per_class}_{name}", e) for name, e in models.items()]
    for key, entry in entries:
        for variant_key, variant in entry.get("variants", {}).items():
            plot = Path(variant.get("plot", ""))
            if plot.is_file():
                target = f"{key}_{variant_key}_augmentation.png"
                shutil.copyfile(plot, out / target)
                variant["figure"] = target
        if "variants" not in entry:
            plot = Path(f"{entry['pool']}.augmentation.png")
            if plot.is_file():
                shutil.copyfile(plot, out / f"{key}_augmentation.png")
                entry["figure"] = f"{key}_augmentation.png"


def _figures(entry: dict[str, Any], caption: str) -> str:
    if "variants" not in entry:
        return f"![{caption}]({entry['figure']})\n\n" if entry.get("figure") else ""
    return "".join(
        f"![{caption}, {v['variant']['label']}]({v['figure']})\n\n"
        for v in entry["variants"].values()
        if v.get("figure")
    )


def _status(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "not met")


def section_a(result: dict[str, Any] | None) -> str:
    head = "## (a) Rare classes\n\n"
    if not result:
        return head + "Not measured yet: `python -m experiments.gap_filling.run --part a`.\n"
    text = head + (
        f"Skewed split: `{result['subset']}` (three classes cut to 20 training images, the rest whole). "
        "Each model is trained on it, exports a class-balanced pool, and a `fill=balance` export (real + "
        "synthetic, verified); the augmentation report trains the classifier on every arm, tested on the whole "
        "real test split.\n\n"
    )
    for name, entry in result["models"].items():
        report = next(iter(_variants(entry).values()))["report"]
        fill_export = entry["fill_export"] or {}
        text += (
            f"### {name}\n\nReal training images per class: {report['real_class_counts']}. The `fill=balance` export "
            f"holds {fill_export.get('real', {}).get('n')} real + {fill_export.get('synthetic', {}).get('n')} synthetic "
            f"images (synthetic per class: {fill_export.get('synthetic', {}).get('per_class')}).\n\n"
        )
        text += _protocol(entry) + _arms_table(entry) + "\n"
        text += _figures(entry, f"{name}: accuracy and rare-class recall per arm")
        target = target_a(entry)
        if target["status"] is None:
            text += "Target (a): **not measured** (no arm with generated images).\n\n"
            continue
        (best, best_s), (base, base_s) = target["best"], target["baseline"] or ("none", None)
        text += (
            f"Target (a), best fill arm `{best}`: rare-class recall {_s(best_s)} against real only "
            f"{_s(target['real'])}"
            + (f" and the best baseline `{base}` {_s(base_s)}" if base_s else "")
            + ". "
            f">= real only + 5 points beyond the spread: **{_status(target['over_real'][0])}** (margin "
            f"{target['over_real'][1]:+.3f}); >= the best baseline beyond the spread: "
            f"**{_status(target['over_baseline'][0])}** (margin {_margin(target['over_baseline'][1])}). "
            f"Target (a): **{_status(target['status'])}**.\n\n"
        )
    return text


def section_b(result: dict[str, Any] | None) -> str:
    head = "## (b) Small data\n\n"
    if not result:
        return head + "Not measured yet: `python -m experiments.gap_filling.run --part b`.\n"
    text = head + "Every class cut to the same number of training images; scored on the real test split.\n\n"
    for per_class, models in result["sizes"].items():
        for name, entry in models.items():
            text += (
                f"### {per_class} images per class, {name}\n\n" + _protocol(entry) + _arms_table(entry) + "\n"
            )
            text += _figures(entry, f"{per_class} per class, {name}")
            if per_class != "10":
                continue
            target = target_b(entry)
            if target["status"] is None:
                text += "Target (b): **not measured** (no real + synthetic arm).\n\n"
                continue
            text += (
                f"Target (b), best real + synthetic arm `{target['best'][0]}`: accuracy {_s(target['best'][1])} "
                f"against real only {_s(target['real'])}; beats real only beyond the spread: "
                f"**{_status(target['status'])}** (margin {target['gap']:+.3f}).\n\n"
            )
    return text


# Issue 29 (c): on 14x14 centre holes, the model's point estimate must beat the nearest-neighbour fill
# in PSNR and recover this share of the classifier accuracy the hole destroyed.
RECOVERED_TARGET = 0.6


def _fill_name(block: dict[str, Any], fill: str) -> str:
    k = block.get("k")
    if fill == "model":
        return f"{block['method']}: mean of {k} draws" if k else block["method"]
    return f"{block['method']}: one draw" if fill == "model_single_draw" else fill


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def target_c(block: dict[str, Any]) -> dict[str, Any]:
    """Target (c) on one mask: the model's point estimate (the mean of its k draws) against the
    nearest-neighbour fill in PSNR, and the share of the destroyed accuracy its fills recover."""
    scores = block["scores"]
    recovered = scores.get("classifier_accuracy", {}).get("model_recovered")
    return {
        "psnr": (scores["model"]["psnr"], scores["nearest_neighbour_fill"]["psnr"]),
        "psnr_met": scores["model"]["psnr"] > scores["nearest_neighbour_fill"]["psnr"],
        "recovered": recovered,
        "recovered_met": None if recovered is None else recovered >= RECOVERED_TARGET,
    }


WHAT_WOULD_MEET_C = """What would meet the target, none of it tried here: both models learnt the digits from whole
images only and fill a 14x14 hole, a quarter of the image and most of the stroke, from the thin ring
around it. A model trained to fill holes (random masks at training time, so that the encoder learns
to infer what a mask hides) is what inpainting work uses; so are diffusion models conditioned on
the observed pixels at every step (RePaint, Lugmayr et al. 2022). The VAE here trained 30 epochs;
a longer run is the cheapest thing to try first. Nearest-neighbour fill is strong on MNIST because
4,000 training digits contain close matches for most rings; it is the bar any model has to clear.

"""


def section_c(result: dict[str, Any] | None) -> str:
    head = "## (c) Missing pixels\n\n"
    if not result:
        return head + "Not measured yet: `python -m experiments.gap_filling.run --part c`.\n"
    rows, figures, targets, unmet = [], [], [], False
    for name, entry in result["models"].items():
        for mask, block in entry["masks"].items():
            scores = block["scores"]
            acc = scores.get("classifier_accuracy", {})
            # The fills in the order src.inpaint scored them; classifier_accuracy is not a fill.
            for fill in (f for f in scores if f != "classifier_accuracy"):
                rows.append(
                    [name, mask, _fill_name(block, fill), f"{scores[fill]['psnr']:.2f}", f"{scores[fill]['mse']:.4f}",
                     f"{scores[fill]['ssim']:.3f}" if scores[fill].get("ssim") is not None else "",
                     _fmt(acc.get(fill), ".3f"), _fmt(acc.get(f"{fill}_recovered"), ".0%")]
                )  # fmt: skip
            figures.append(
                f"![{name} {mask}]({block['figure']})  \n{name}, {mask}: rows "
                + ", ".join(
                    block.get("preview_rows")
                    or ["original", "masked", block["method"], "mean fill", "nearest neighbour"]
                )
            )
            if mask == "center":
                t = target_c(block)
                unmet = unmet or not (t["psnr_met"] and t["recovered_met"])
                recovered = "n/a" if t["recovered"] is None else f"{t['recovered']:.0%}"
                targets.append(
                    f"{name}, centre: PSNR of the mean of the draws {t['psnr'][0]:.2f} dB against the nearest "
                    f"neighbour's {t['psnr'][1]:.2f} dB, beats it: **{_status(t['psnr_met'])}**; accuracy "
                    f"recovered {recovered} "
                    f"(target >= {RECOVERED_TARGET:.0%}): **{_status(t['recovered_met'])}**"
                )
    table = markdown_table(
        ["model", "mask", "fill", "PSNR (holes)", "MSE (holes)", "SSIM", "acc. filled", "recovered"], rows
    )
    first = next(iter(next(iter(result["models"].values()))["masks"].values()))
    acc = first["scores"].get("classifier_accuracy", {})
    return (
        head
        + f"Test split ({first.get('n')} images), masks seeded (seed 0); PSNR, MSE and SSIM on the missing "
        + "pixels only. The model's point estimate is the mean of its k draws (the posterior mean "
        + "minimises squared error; one draw is penalised by construction and shown apart). "
        + "*recovered*: (filled accuracy - masked accuracy) / (original - masked), the domain "
        + f"classifier's accuracy being {acc.get('original', float('nan')):.3f} on the originals and "
        + "falls with the mask (per mask in `results.json`).\n\n"
        + table
        + "\n"
        + "\n".join(f"- {t}" for t in targets)
        + "\n\n"
        + (WHAT_WOULD_MEET_C if unmet else "")
        + "\n\n".join(figures)
        + "\n"
    )


def readme(results: dict[str, Any]) -> str:
    parts = results.get("parts", {})
    timing = "; ".join(
        f"({k}) {v['wall_seconds'] / 60:.1f} min, every command with {v['threads']} thread(s)"
        + (
            f" (the commands' own fit, test and inpainting time: {v['result']['command_seconds'] / 60:.1f} min,"
            " reused runs included)"
            if "command_seconds" in (v.get("result") or {})
            else ""
        )
        + (" (SMOKE budgets: the numbers only show that the pipeline runs)" if v["smoke"] else "")
        for k, v in parts.items()
    )
    machine = next((v["machine"] for v in parts.values()), "")
    budgets = "; ".join(
        f"({k}) " + ", ".join(f"{name} {value}" for name, value in v["budget"].items())
        for k, v in parts.items()
        if v.get("budget")
    )
    return f"""# Gap filling: rare classes, small data, missing pixels

Reproduce, one command per part (each rewrites this file from `results.json`); (a) and (b) are meant to
run side by side on two cores, one thread each (wall times under "Measured"):

```
python -m experiments.gap_filling.run --part a
python -m experiments.gap_filling.run --part b
python -m experiments.gap_filling.run --part c
```

Data: the bundled 5,000-image MNIST subset (4,000 / 500 / 500 train / val / test, `data.split_seed=0`).
Models train with seed 12345; (a) and (b) use the conditional models of `experiments/synthetic_mnist`
(cGAN on DCGAN networks, cVAE), (c) the unconditional `vae` and `dcgan`. The augmentation report is
`python -m src.evaluate_dataset synthetic=<pool> augmentation.enabled=true` (classifier: the framework's
domain classifier; mean ± std over seeds): every batch of an arm with synthetic images holds a fixed share
of real images, every arm trains until its real images had the real-only arm's passes, weights are chosen
on the val split, synthetic labels are the generator's (`given`) or a teacher's (the real-only classifier:
`teacher_hard`, `teacher_soft`) with a confidence filter (`conf`) and a loss weight (`weight`); baselines
oversample the rare classes, weight the loss by inverse class frequency, or add SMOTE images. NAS is the
Naive Augmentation Score (Ravuri & Vinyals 2019), accuracy minus real-only accuracy. A beats B *beyond
the spread* when A's mean minus its std over seeds exceeds B's mean plus its std (plus the target's
margin); the best arm is picked by its test mean, which favours the targets.

Measured: {timing or "nothing yet"}{f". Machine: {machine} (the study process)" if machine else ""}.
A part's wall time is its own, measured while other parts may run beside it on the same cores.
{f"Budgets: {budgets}." if budgets else ""}

{section_a(parts.get("a", {}).get("result"))}
{section_b(parts.get("b", {}).get("result"))}
{section_c(parts.get("c", {}).get("result"))}"""


def _budget(args: argparse.Namespace) -> dict[str, Any]:
    budget = dict(SMOKE if args.smoke else FULL)
    given = {
        "epochs_rare": args.epochs,
        "steps_small": args.steps_small,
        "seeds": args.seeds,
        "ratios": args.ratios,
        "classifier_epochs": args.classifier_epochs,
        "real_share": args.real_share,
        "variants": args.variants,
        "sizes": args.sizes,
        "models": args.models,
    }
    budget.update({k: v for k, v in given.items() if v is not None})
    for spec in budget["variants"]:
        parse_variant(spec)
    unknown = set(budget["models"]) - set(CONDITIONAL)
    if unknown:
        raise SystemExit(f"--models: {sorted(unknown)} unknown; choose from {list(CONDITIONAL)}")
    return budget


def _numbers(kind: type) -> Any:
    return lambda text: [kind(v) for v in text.split(",") if v]


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
    parser.add_argument("--reuse", action="store_true", help="skip commands already finished in --log-dir")
    budget = parser.add_argument_group("budget (defaults: the study's)")
    budget.add_argument("--epochs", type=int, help=f"(a): epochs of the models ({FULL['epochs_rare']})")
    budget.add_argument("--steps-small", type=int, help=f"(b): steps of the models ({FULL['steps_small']})")
    budget.add_argument("--seeds", type=_numbers(int), help="classifier seeds, e.g. 0,1,2")
    budget.add_argument("--ratios", type=_numbers(float), help="synthetic pools / real count, e.g. 1,4")
    budget.add_argument("--classifier-epochs", type=int, help=f"({FULL['classifier_epochs']})")
    budget.add_argument("--real-share", type=float, help=f"({FULL['real_share']})")
    budget.add_argument(
        "--variants",
        type=lambda text: text.split(","),
        help="labels[:min_confidence[:synthetic_weight]], comma-separated (given,teacher_hard:0.5)",
    )
    budget.add_argument("--sizes", type=_numbers(int), help="(b): images per class, e.g. 10,50 (10)")
    budget.add_argument("--models", type=lambda text: text.split(","), help="cgan,cvae")
    args = parser.parse_args()
    if args.readme_only:
        out = args.out or HERE
        results = json.loads((out / "results.json").read_text())
        collect_figures(results, out)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (out / "README.md").write_text(readme(results))
        return
    budget = _budget(args)
    out = args.out or (Path(tempfile.mkdtemp(prefix="gap_filling_smoke_")) if args.smoke else HERE)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="gap_filling_runs_"))
    out.mkdir(parents=True, exist_ok=True)
    study = Study(log_dir, args.threads, budget, reuse=args.reuse)
    results_path = out / "results.json"
    for part in ("a", "b", "c") if args.part == "all" else (args.part,):
        started = time.perf_counter()
        result = {"a": part_a, "b": part_b}[part](study) if part != "c" else part_c(study, out)
        # Re-read: parts run side by side (one core each) share results.json; keep what the others wrote.
        results = json.loads(results_path.read_text()) if results_path.is_file() else {"parts": {}}
        shown = ("seeds", "ratios", "classifier_epochs", "real_share", "variants", "models")
        shown += {"a": ("epochs_rare",), "b": ("steps_small", "sizes"), "c": ("epochs",)}[part]
        results["parts"][part] = {
            "result": result,
            "wall_seconds": time.perf_counter() - started,
            "machine": machine_description(),
            "threads": args.threads,
            "smoke": args.smoke,
            "log_dir": str(log_dir),
            "budget": {k: budget[k] for k in shown} if part != "c" else {"epochs": budget["epochs"]},
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
