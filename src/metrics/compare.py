"""Comparing runs: mean and spread over seeds per configuration (``python -m src.compare``).

Runs are the directories that ``src.train`` leaves (``metrics.json``, ``.hydra/``, ``csv/``). A
*configuration* is a run's command-line overrides without the seed and without the overrides that
only say where a run writes or how it is watched (``paths.*``, ``hydra.*``, ``logger.*``); the runs
of one configuration are its seeds. For each configuration :func:`compare_runs` gives every
score's mean and sample standard deviation over the finished runs (failed runs are counted, not
averaged), and score-vs-step curves (mean and spread over seeds at the steps all of them logged)
from the CSV logs. :func:`write_comparison` writes them as ``compare.md``, ``compare.json`` and
``compare.png``; :func:`log_comparison_to_wandb` sends them to W&B.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from src.metrics import registry
from src.utils.errors import UserError

METRICS_FILE = "metrics.json"
CSV_FILE = Path("csv") / "metrics.csv"
# Overrides that do not change what a run computes.
NOT_CONFIGURATION = ("seed", "paths.", "hydra.", "logger.", "trainer.enable_progress_bar", "ckpt_path")
STAGE_ORDER = {"test": 0, "val": 1, "spread": 2, "train": 3}
MAX_PLOTS = 12


@dataclass
class Run:
    """One run directory: its configuration, seed, final scores and logged curves."""

    directory: Path
    configuration: str
    overrides: list[str]
    seed: int | None
    status: str
    scores: dict[str, float]
    curves: dict[str, dict[int, float]] = field(default_factory=dict)


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories (holding ``metrics.json``) among ``paths`` and their immediate sub-directories."""
    if not paths:
        raise UserError(
            "give run directories or a multirun directory: python -m src.compare <dir> [<dir> ...]"
        )
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_dir():
            raise UserError(f"{path} is not a directory: give run directories or a multirun directory.")
        if (path / METRICS_FILE).is_file():
            found.append(path)
            continue
        children = sorted(
            (child for child in path.iterdir() if (child / METRICS_FILE).is_file()),
            key=lambda child: (
                not child.name.isdigit(),
                int(child.name) if child.name.isdigit() else 0,
                child.name,
            ),
        )
        if not children:
            raise UserError(
                f"{path} holds no runs: neither it nor its sub-directories have a {METRICS_FILE} "
                "(give a run directory or a multirun directory such as logs/train/multiruns/<timestamp>)."
            )
        found.extend(children)
    return list(dict.fromkeys(p.resolve() for p in found))


def configuration_overrides(overrides: Iterable[str]) -> list[str]:
    """The overrides that define what a run computes (seed and output locations left out)."""
    return sorted(o for o in overrides if not o.lstrip("+~").startswith(NOT_CONFIGURATION))


def configuration_of(overrides: Iterable[str]) -> str:
    return " ".join(configuration_overrides(overrides)) or "(defaults)"


def read_run(directory: Path) -> Run:
    hydra_dir = directory / ".hydra"
    if not (hydra_dir / "overrides.yaml").is_file():
        raise UserError(
            f"{directory} has no .hydra/overrides.yaml: it is not a run directory written by src.train."
        )
    try:
        overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []
        config = (
            yaml.safe_load((hydra_dir / "config.yaml").read_text())
            if (hydra_dir / "config.yaml").is_file()
            else {}
        )
        payload = json.loads((directory / METRICS_FILE).read_text())
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise UserError(f"{directory}: cannot read its run record ({type(exc).__name__}: {exc}).") from None
    scores = {
        name: float(value)
        for name, value in payload.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }
    seed = (config or {}).get("seed")
    return Run(
        directory=directory,
        configuration=configuration_of(overrides),
        overrides=configuration_overrides(overrides),
        seed=int(seed) if isinstance(seed, int) else None,
        status=str(payload.get("status", "unknown")),
        scores=scores,
        curves=read_curves(directory / CSV_FILE),
    )


def read_curves(path: Path) -> dict[str, dict[int, float]]:
    """``{score: {step: value}}`` of the ``val/...`` columns of a CSV log (later rows win on resume)."""
    if not path.is_file():
        return {}
    curves: dict[str, dict[int, float]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            step = row.get("step")
            if not step:
                continue
            for name, value in row.items():
                if name and name.startswith("val/") and value not in (None, ""):
                    number = float(value)
                    if math.isfinite(number):
                        curves.setdefault(name, {})[int(float(step))] = number
    return curves


def _mean_std(values: list[float]) -> dict[str, float | int | None]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def score_order(name: str) -> tuple[int, str]:
    return STAGE_ORDER.get(name.split("/", 1)[0] if "/" in name else "", 4), name


def compare_runs(directories: Sequence[Path]) -> dict[str, Any]:
    """Mean and spread over seeds of every score, per configuration, with curves.

    Configurations are named by the overrides in which they differ; those shared by every run are
    ``common_overrides``.
    """
    runs = [read_run(directory) for directory in directories]
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.configuration, []).append(run)
    common = set.intersection(*(set(run.overrides) for run in runs)) if runs else set()
    configurations = []
    for members in groups.values():
        name = " ".join(o for o in members[0].overrides if o not in common) or "(all runs)"
        finished = [run for run in members if run.status == "ok"]
        names = sorted({score for run in finished for score in run.scores}, key=score_order)
        scores = {
            score: _mean_std([run.scores[score] for run in finished if score in run.scores])
            for score in names
        }
        configurations.append(
            {
                "configuration": name,
                "runs": len(finished),
                "failed": [str(run.directory) for run in members if run.status != "ok"],
                "seeds": [run.seed for run in finished],
                "directories": [str(run.directory) for run in finished],
                "scores": scores,
                "curves": _mean_curves(finished),
            }
        )
    if not any(c["runs"] for c in configurations):
        raise UserError(
            f"none of the {len(runs)} runs finished (status ok): nothing to compare. Failed: "
            + ", ".join(str(run.directory) for run in runs)
        )
    return {"runs": len(runs), "common_overrides": sorted(common), "configurations": configurations}


def _mean_curves(runs: list[Run]) -> dict[str, dict[str, list[Any]]]:
    """Per score with a direction: mean and spread over the runs at the steps every run logged."""
    curves: dict[str, dict[str, list[Any]]] = {}
    names = sorted({name for run in runs for name in run.curves})
    for name in names:
        row = registry.lookup(name)
        if row is None or row.higher_is_better is None:
            continue
        series = [run.curves[name] for run in runs if name in run.curves]
        if len(series) < len(runs):
            continue
        steps = sorted(set.intersection(*(set(s) for s in series)))
        if not steps:
            continue
        stats = [_mean_std([s[step] for s in series]) for step in steps]
        curves[name] = {
            "step": steps,
            "mean": [s["mean"] for s in stats],
            "std": [s["std"] or 0.0 for s in stats],
        }
    return curves


# ---------------------------------------------------------------------------- output
def _cell(stats: dict[str, Any] | None) -> str:
    if not stats:
        return ""
    mean, std = stats["mean"], stats["std"]
    return f"{mean:.4g}" if std is None else f"{mean:.4g} ± {std:.2g}"


def markdown(comparison: dict[str, Any], scores: Sequence[str] | None = None) -> str:
    """Rows: scores (with the table's arrow); columns: configurations, ``mean ± std (n seeds)``."""
    configurations = [c for c in comparison["configurations"] if c["runs"]]
    names = (
        list(scores) if scores else sorted({n for c in configurations for n in c["scores"]}, key=score_order)
    )
    header = ["score"] + [f"`{c['configuration']}` (n={c['runs']})" for c in configurations]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        cells = [_cell(c["scores"].get(name)) for c in configurations]
        if any(cells):
            lines.append("| " + " | ".join([registry.with_arrow(name), *cells]) + " |")
    failed = [d for c in comparison["configurations"] for d in c["failed"]]
    text = "\n".join(lines) + "\n"
    if comparison.get("common_overrides"):
        text += "\nEvery run: `" + " ".join(comparison["common_overrides"]) + "`.\n"
    text += "\nMean ± sample standard deviation over seeds; ↑/↓: higher/lower is better (src/metrics/registry.py).\n"
    if failed:
        text += "\nFailed runs, left out: " + ", ".join(f"`{d}`" for d in failed) + "\n"
    return text


def plot(comparison: dict[str, Any], path: Path, scores: Sequence[str] | None = None) -> Path:
    """Score-vs-step curves (mean ± std over seeds, one line per configuration); without CSV logs,
    the final scores as bars. Written to ``path``."""
    import matplotlib.pyplot as plt

    fig = comparison_figure(comparison, scores)
    fig.savefig(path)
    plt.close(fig)
    return path


def comparison_figure(comparison: dict[str, Any], scores: Sequence[str] | None = None) -> Any:
    """The figure :func:`plot` writes (a matplotlib ``Figure``; the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configurations = comparison["configurations"]
    curve_names = sorted({n for c in configurations for n in c["curves"]}, key=score_order)
    if scores:
        curve_names = [n for n in curve_names if n in scores or n.replace("val/", "test/", 1) in scores]
    curve_names = curve_names[:MAX_PLOTS]
    if curve_names:
        names, kind = curve_names, "curve"
    else:
        candidates = (
            list(scores)
            if scores
            else sorted({n for c in configurations for n in c["scores"]}, key=score_order)
        )
        names = [n for n in candidates if registry.arrow(n)][:MAX_PLOTS]
        kind = "bar"
    if not names:
        raise UserError("the runs hold no score with a direction to plot (see src/metrics/registry.py).")
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), dpi=100, squeeze=False)
    for ax, name in zip(axes.flat, names):
        for index, c in enumerate(configurations):
            label = c["configuration"]
            if kind == "curve" and name in c["curves"]:
                curve = c["curves"][name]
                mean, std = curve["mean"], curve["std"]
                if len(curve["step"]) == 1:
                    # One evaluation per run: a line through one point draws nothing, and neither
                    # does a band over one step; a marker with an error bar does.
                    ax.errorbar(curve["step"], mean, yerr=std, marker="o", capsize=3, label=label)
                    continue
                ax.plot(curve["step"], mean, label=label)
                ax.fill_between(
                    curve["step"],
                    [m - s for m, s in zip(mean, std)],
                    [m + s for m, s in zip(mean, std)],
                    alpha=0.2,
                )
            elif kind == "bar" and name in c["scores"]:
                stats = c["scores"][name]
                ax.bar(index, stats["mean"], yerr=stats["std"] or 0.0, label=label, capsize=3)
        ax.set_title(registry.with_arrow(name), fontsize=9)
        ax.set_xlabel("step" if kind == "curve" else "configuration", fontsize=8)
        ax.tick_params(labelsize=7)
        if kind == "bar":
            ax.set_xticks([])
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", fontsize=7, ncol=min(3, len(labels)))
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 1))
    return fig


def write_comparison(
    comparison: dict[str, Any], out_dir: Path, scores: Sequence[str] | None = None
) -> dict[str, Path]:
    """``compare.md``, ``compare.json`` and ``compare.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out_dir / "compare.md",
        "json": out_dir / "compare.json",
        "plot": out_dir / "compare.png",
    }
    paths["markdown"].write_text(markdown(comparison, scores))
    paths["json"].write_text(json.dumps(comparison, indent=2) + "\n")
    plot(comparison, paths["plot"], scores)
    return paths


def wandb_settings(directories: Sequence[Path]) -> dict[str, Any] | None:
    """The W&B logger settings of the compared runs, if they logged to W&B."""
    for directory in directories:
        config_path = directory / ".hydra" / "config.yaml"
        if not config_path.is_file():
            continue
        loggers = (yaml.safe_load(config_path.read_text()) or {}).get("logger") or {}
        if isinstance(loggers, dict) and isinstance(loggers.get("wandb"), dict):
            return loggers["wandb"]
    return None


def log_comparison_to_wandb(
    comparison: dict[str, Any], paths: dict[str, Path], settings: dict[str, Any], out_dir: Path
) -> str:
    """Logs the table and plot as a W&B run (``job_type=compare``) in the runs' project; offline
    without credentials, like the training logger. Returns the run's directory."""
    import wandb

    from src.logger.wandb import has_credentials

    mode = settings.get("mode") or "auto"
    if mode == "auto":
        mode = "online" if has_credentials() else "offline"
    configurations = comparison["configurations"]
    names = sorted({n for c in configurations for n in c["scores"]}, key=score_order)
    table = wandb.Table(columns=["configuration", "runs", "score", "mean", "std"])
    for c in configurations:
        for name in names:
            stats = c["scores"].get(name)
            if stats:
                table.add_data(c["configuration"], c["runs"], name, stats["mean"], stats["std"])
    run = wandb.init(
        project=settings.get("project") or "genlab",
        entity=settings.get("entity"),
        group=settings.get("group"),
        job_type="compare",
        name=f"compare-{out_dir.name}",
        dir=str(out_dir),
        mode=mode,
        config={"configurations": [c["configuration"] for c in configurations]},
    )
    try:
        run.log({"compare/scores": table, "compare/plot": wandb.Image(str(paths["plot"]))})
        run.summary.update(
            {
                f"{c['configuration']}/{name}/mean": c["scores"][name]["mean"]
                for c in configurations
                for name in c["scores"]
            }
        )
        return str(run.dir)
    finally:
        run.finish()
