"""Training throughput of `src.train` against a minimal PyTorch loop of the same networks.

Both sides run in their own process with the same thread count, batch size and data (MNIST as
`data=mnist` finds it: the files, or offline the bundled 5,000-image subset), and build the very
same module from the same Hydra config. The raw loop then drives it by hand: index a shuffled
batch, map it to [0, 1], compute the loss with the module's own functions, backward, step. The
framework side is the real command line with a step-timing callback added. Throughput counts the
steps after a warm-up; validation is switched off on both sides (it is not training).

    python -m experiments.benchmarks.training compare --model vae --steps 300
    python -m experiments.benchmarks.training overhead --model dcgan --batch-size 16 --steps 400 --warmup 100
    python -m experiments.benchmarks.training startup --model vae --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from experiments.benchmarks.timing import steady_throughput, timing_record

ROOT = Path(__file__).resolve().parents[2]
# wgan_gp: the GAN with n_critic=5 and a gradient penalty (a generator update every fifth step).
MODEL_OVERRIDES = {"vae": ["model=vae"], "dcgan": ["model=dcgan"], "wgan_gp": ["model=wgan_gp"]}
# The speed options of `hardware` / `trainer`, each measured against the framework's defaults.
VARIANTS = {
    "channels_last": ["hardware.channels_last=true"],
    "bf16-mixed": ["hardware.precision=bf16-mixed"],
    "compile": ["hardware.compile=true"],
}


def _env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PL_", "LOCAL_RANK"))}
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONUNBUFFERED="1",
        WANDB_MODE="disabled",
    )
    return env


def common_overrides(model: str, batch_size: int) -> list[str]:
    return [*MODEL_OVERRIDES[model], "data=mnist", f"data.batch_size={batch_size}", "hardware=cpu"]


def run_framework(
    model: str, batch_size: int, steps: int, threads: int, workdir: Path, extra: Sequence[str] = ()
) -> dict:
    """`python -m src.train ...` as a user runs it; returns timings and the launch-to-first-step time."""
    timings = workdir / f"framework-{model}.json"
    command = [
        sys.executable,
        "-m",
        "src.train",
        *common_overrides(model, batch_size),
        # `max_steps` counts generator updates for GANs: n_critic real batches each.
        f"trainer.max_steps={-(-steps // batches_per_step(model, batch_size))}",
        "trainer.max_epochs=-1",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "test=false",
        "metrics=none",
        "model.monitor=null",
        f"paths.log_dir={workdir / 'logs'}",
        "+callbacks.step_timer._target_=experiments.benchmarks.timing.StepTimer",
        f"+callbacks.step_timer.path={timings}",
        *extra,
    ]
    launched = time.time()
    proc = subprocess.run(command, cwd=ROOT, env=_env(threads), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"src.train failed:\n{proc.stderr[-3000:]}")
    record = json.loads(timings.read_text())
    record["startup_s"] = record["first_step_wall"] - launched
    return record


def run_raw(model: str, batch_size: int, steps: int, threads: int, workdir: Path) -> dict:
    out = workdir / f"raw-{model}.json"
    command = [
        sys.executable,
        "-m",
        "experiments.benchmarks.training",
        "raw",
        f"--model={model}",
        f"--batch-size={batch_size}",
        f"--steps={steps}",
        f"--out={out}",
    ]
    proc = subprocess.run(command, cwd=ROOT, env=_env(threads), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"raw loop failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def composed_config(model: str, batch_size: int):
    """The config `src.train` composes for these overrides, with a throwaway output directory."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from src.runtime.entry import CONFIG_DIR

    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", overrides=common_overrides(model, batch_size), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        cfg.paths.output_dir = tempfile.mkdtemp()
        del cfg["hydra"]
    return cfg


def batches_per_step(model: str, batch_size: int) -> int:
    """Real batches per `global_step`: a GAN's n_critic, 1 for the VAE."""
    return int(composed_config(model, batch_size).model.get("n_critic", 1))


def build_module_and_data(model: str, batch_size: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The module `src.train` would build for these overrides, and the training split it would use."""
    from hydra.utils import instantiate

    cfg = composed_config(model, batch_size)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup()
    x, y = datamodule.split("train")
    return instantiate(cfg.model), x, y


def raw_loop(model: str, batch_size: int, steps: int) -> dict:
    """A hand-written training loop over the same module, data and optimizer settings."""
    torch.manual_seed(0)
    module, x, y = build_module_and_data(model, batch_size)
    module.train()
    step_fn = (_vae_step if model == "vae" else _gan_step)(module)
    generator = torch.Generator().manual_seed(0)
    step_ends: list[float] = []
    first_step_wall = None
    while len(step_ends) < steps:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            if first_step_wall is None:
                first_step_wall = time.time()
            idx = order[start : start + batch_size]
            step_fn(module.to_model_range(x[idx]), y[idx])
            step_ends.append(time.perf_counter())
            if len(step_ends) == steps:
                break
    return timing_record(first_step_wall, step_ends)


def _vae_step(module):
    optimizer = module.optimizer_factory(params=module.parameters())

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        log_px, kl = module.elbo_terms(module.likelihood_targets(x, None), y, None)
        loss = (-log_px + module.beta * kl).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _gan_step(module):
    """One discriminator update per real batch (with the config's penalties), and a generator update
    every ``n_critic``-th batch, as `GanModule.training_step` trains."""
    optimizer_g = module.optimizer_g(params=module.generator.parameters())
    optimizer_d = module.optimizer_d(params=module.discriminator.parameters())
    generator, discriminator, loss = module.generator, module.discriminator, module.loss
    batches = itertools.count(1)

    def step(real: torch.Tensor, y: torch.Tensor) -> None:
        n = len(real)
        with torch.no_grad():
            fake = generator(module.sample_latents(n), None)
        d_loss = loss.discriminator(discriminator(real, None), discriminator(fake, None))
        for penalty in module.penalties:
            d_loss = d_loss + penalty(lambda x: discriminator(x, None), real, fake, None)
        optimizer_d.zero_grad(set_to_none=True)
        d_loss.backward()
        optimizer_d.step()
        if next(batches) % module.n_critic:
            return
        discriminator.requires_grad_(False)
        g_loss = loss.generator(discriminator(generator(module.sample_latents(n), None), None))
        optimizer_g.zero_grad(set_to_none=True)
        g_loss.backward()
        optimizer_g.step()
        discriminator.requires_grad_(True)

    return step


def compare(model: str, batch_size: int, steps: int, warmup: int, repeats: int, threads: int) -> dict:
    """Alternates framework and raw runs; medians over the repeats."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        framework, raw = [], []
        for _ in range(repeats):
            raw.append(run_raw(model, batch_size, steps, threads, workdir))
            framework.append(run_framework(model, batch_size, steps, threads, workdir))
    fw_ips = [steady_throughput(r["step_ends"], batch_size, warmup) for r in framework]
    raw_ips = [steady_throughput(r["step_ends"], batch_size, warmup) for r in raw]
    return {
        "model": model,
        "batch_size": batch_size,
        "threads": threads,
        "steps": steps,
        "warmup_steps": warmup,
        "repeats": repeats,
        "framework_images_per_s": statistics.median(fw_ips),
        "raw_images_per_s": statistics.median(raw_ips),
        "ratio": statistics.median(fw_ips) / statistics.median(raw_ips),
        "framework_runs_images_per_s": fw_ips,
        "raw_runs_images_per_s": raw_ips,
        "startup_s": statistics.median(r["startup_s"] for r in framework),
        "framework_peak_rss_mb": max(r["peak_rss_mb"] for r in framework),
        "raw_peak_rss_mb": max(r["peak_rss_mb"] for r in raw),
        # On a GPU: torch's peak allocated device memory, each side.
        **(
            {
                "framework_peak_device_mb": max(r["peak_device_mb"] for r in framework),
                "raw_peak_device_mb": max(r["peak_device_mb"] for r in raw),
            }
            if "peak_device_mb" in raw[0]
            else {}
        ),
    }


def step_milliseconds(step_ends: list[float], warmup: int) -> list[float]:
    """Duration of each step after ``warmup``, in milliseconds."""
    window = step_ends[warmup:]
    return [1e3 * (b - a) for a, b in itertools.pairwise(window)]


def overhead(model: str, batch_size: int, steps: int, warmup: int, pairs: int, threads: int) -> dict:
    """The framework's extra milliseconds per step at a batch small enough for compute to be cheap.

    Interleaved pairs (raw loop, then `src.train`), each side's median step time per run; the extra
    cost is framework minus raw within each pair, reported as the median over pairs and its range.
    The mean includes the per-epoch work (checkpoint writes, sample grids), the median does not.
    """
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        runs = [
            (
                run_raw(model, batch_size, steps, threads, workdir),
                run_framework(model, batch_size, steps, threads, workdir),
            )
            for _ in range(pairs)
        ]
    raw_median = [statistics.median(step_milliseconds(r["step_ends"], warmup)) for r, _ in runs]
    fw_median = [statistics.median(step_milliseconds(f["step_ends"], warmup)) for _, f in runs]
    raw_mean = [statistics.mean(step_milliseconds(r["step_ends"], warmup)) for r, _ in runs]
    fw_mean = [statistics.mean(step_milliseconds(f["step_ends"], warmup)) for _, f in runs]
    extra = [f - r for f, r in zip(fw_median, raw_median)]
    extra_mean = [f - r for f, r in zip(fw_mean, raw_mean)]
    return {
        "model": model,
        "batch_size": batch_size,
        "threads": threads,
        "steps": steps,
        "warmup_steps": warmup,
        "pairs": pairs,
        "raw_step_ms": statistics.median(raw_median),
        "framework_step_ms": statistics.median(fw_median),
        "extra_ms_per_step": statistics.median(extra),
        "extra_ms_per_step_range": [min(extra), max(extra)],
        "extra_ms_per_step_mean": statistics.median(extra_mean),
        "pairs_extra_ms": extra,
    }


STARTUP_BASELINE_MODULES = "torch, lightning"
STARTUP_BASELINE = f"import {STARTUP_BASELINE_MODULES}"
FDR_MODELS = ("vae", "cvae", "dcgan", "cgan", "wgan_gp", "sngan", "gan_mlp")


def _wall_seconds(command: Sequence[str], threads: int) -> float:
    """Wall time of one process, from launch to exit."""
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=_env(threads), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def _launch_to_import_seconds(modules: str, threads: int) -> float:
    """Launch of ``python -c "import <modules>"`` to the end of its imports (interpreter exit excluded,
    as it is from the first-step time)."""
    code = f"import {modules}, time; print(time.time())"
    launched = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(threads), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"python -c {code!r} failed:\n{proc.stderr[-3000:]}")
    return float(proc.stdout.strip().splitlines()[-1]) - launched


def data_load_seconds(model: str, batch_size: int) -> float:
    """Seconds to compose, prepare and set up the training data, after the imports (run in a fresh process)."""
    started = time.perf_counter()
    build_module_and_data(model, batch_size)
    return time.perf_counter() - started


def startup(model: str, batch_size: int, threads: int, repeats: int, fdr_models: Sequence[str]) -> dict:
    """Command -> first training step, next to its parts and to the floor any PyTorch script pays.

    Each figure is the median of ``repeats`` fresh processes: launch to the end of ``import torch,
    lightning`` (the floor) and of ``import src.train`` (the entry point's imports), ``python -m
    src.train ... --cfg job`` (imports + Hydra composition, no task; to process exit), the training
    data's preparation and set-up in a process that has already imported everything (``data_load_s``,
    which also composes and builds the module), and the launch-to-first-step time of a real run (no
    metrics). Target: the
    first step within 1.5x of floor + data load. ``fast_dev_run_s``: ``python -m src.train model=<m>
    data=mnist debug=fdr hardware=cpu`` end to end (the default metrics, extractor cached).
    """
    python = sys.executable
    overrides = common_overrides(model, batch_size)

    def median_of(measure) -> float:
        return statistics.median(measure() for _ in range(repeats))

    def data_load() -> float:
        out = Path(tempfile.mkdtemp()) / "data_load.json"
        command = [python, "-m", "experiments.benchmarks.training", "data-load", f"--model={model}"]
        _wall_seconds([*command, f"--batch-size={batch_size}", f"--out={out}"], threads)
        return float(json.loads(out.read_text())["data_load_s"])

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        record = {
            "model": model,
            "threads": threads,
            "repeats": repeats,
            "baseline_s": median_of(lambda: _launch_to_import_seconds(STARTUP_BASELINE_MODULES, threads)),
            "imports_s": median_of(lambda: _launch_to_import_seconds("src.train", threads)),
            "compose_s": median_of(
                lambda: _wall_seconds([python, "-m", "src.train", *overrides, "--cfg", "job"], threads)
            ),
            "data_load_s": median_of(data_load),
            "first_step_s": median_of(
                lambda: run_framework(model, batch_size, 3, threads, workdir)["startup_s"]
            ),
        }
        fdr = {}
        for name in fdr_models:
            command = [python, "-m", "src.train", f"model={name}", "data=mnist", "debug=fdr", "hardware=cpu"]
            fdr[name] = _wall_seconds([*command, f"paths.log_dir={workdir / 'logs'}"], threads)
    record["fast_dev_run_s"] = fdr
    record["target_s"] = 1.5 * (record["baseline_s"] + record["data_load_s"])
    return record


def variants(model: str, batch_size: int, steps: int, warmup: int, threads: int) -> list[dict]:
    """Framework throughput with each speed option on, next to a run with the defaults."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        base = run_framework(model, batch_size, steps, threads, workdir)
        base_ips = steady_throughput(base["step_ends"], batch_size, warmup)
        for name, overrides in VARIANTS.items():
            try:
                record = run_framework(model, batch_size, steps, threads, workdir, overrides)
            except RuntimeError as exc:  # an option this machine cannot run is a row, not a crash
                rows.append({"model": model, "option": name, "error": str(exc).splitlines()[-1]})
                continue
            ips = steady_throughput(record["step_ends"], batch_size, warmup)
            rows.append(
                {
                    "model": model,
                    "option": name,
                    "overrides": overrides,
                    "images_per_s": ips,
                    "defaults_images_per_s": base_ips,
                    "speedup": ips / base_ips,
                    "startup_s": record["startup_s"],
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["compare", "overhead", "startup", "raw", "data-load"])
    parser.add_argument("--model", choices=list(MODEL_OVERRIDES), default="vae")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="compare: runs per side; overhead: pairs")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.mode == "raw":
        result = raw_loop(args.model, args.batch_size, args.steps)
    elif args.mode == "data-load":
        result = {"data_load_s": data_load_seconds(args.model, args.batch_size)}
    elif args.mode == "startup":
        result = startup(args.model, args.batch_size, args.threads, args.repeats, FDR_MODELS)
    elif args.mode == "overhead":
        result = overhead(args.model, args.batch_size, args.steps, args.warmup, args.repeats, args.threads)
    else:
        result = compare(args.model, args.batch_size, args.steps, args.warmup, args.repeats, args.threads)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
