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
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch

from experiments.benchmarks.timing import StepTimer, steady_throughput, timing_record
from src.models import VaeModule

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


def framework_overrides(model: str, batch_size: int, steps: int, timings: Path, workdir: Path) -> list[str]:
    """The command line of a benchmarked `src.train` run: ``steps`` real batches, no validation,
    no metrics, checkpoints every epoch as usual, a step-timing callback writing to ``timings``."""
    return [
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
    ]


def run_framework(
    model: str, batch_size: int, steps: int, threads: int, workdir: Path, extra: Sequence[str] = ()
) -> dict:
    """`python -m src.train ...` as a user runs it; returns timings and the launch-to-first-step time."""
    timings = workdir / f"framework-{model}.json"
    command = [
        sys.executable,
        "-m",
        "src.train",
        *framework_overrides(model, batch_size, steps, timings, workdir),
        *extra,
    ]
    launched = time.time()
    proc = subprocess.run(command, cwd=ROOT, env=_env(threads), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"src.train failed:\n{proc.stderr[-3000:]}")
    record = json.loads(timings.read_text())
    record["startup_s"] = record["first_step_wall"] - launched
    return record


def framework_loop(model: str, batch_size: int, steps: int) -> dict:
    """`src.train`'s own task on the config its command line composes, run in this process."""
    from src.runtime.run import run_task
    from src.train import train

    with tempfile.TemporaryDirectory() as tmp:
        timings = Path(tmp) / "steps.json"
        overrides = framework_overrides(model, batch_size, steps, timings, Path(tmp))
        # The run's checkpoints and logs go with the temporary directory.
        run_task(train, composed_config(model, batch_size, overrides, output_dir=Path(tmp) / "run"))
        return json.loads(timings.read_text())


def run_raw(model: str, batch_size: int, steps: int, threads: int, workdir: Path) -> dict:
    """The raw loop in a process of its own."""
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


def composed_config(
    model: str, batch_size: int, overrides: Sequence[str] | None = None, output_dir: Path | None = None
):
    """The config `src.train` composes for ``overrides`` (default: the model's and batch size), writing
    into ``output_dir`` (default: a throwaway directory)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from src.runtime.entry import CONFIG_DIR

    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        overrides = list(overrides or common_overrides(model, batch_size))
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        cfg.paths.output_dir = str(output_dir or tempfile.mkdtemp())
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


def _batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, steps: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` batches of whole shuffled epochs (the last short batch dropped), as `src.train` serves them."""
    generator = torch.Generator().manual_seed(0)
    served = 0
    while True:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]
            served += 1
            if served == steps:
                return


def raw_loop(model: str, batch_size: int, steps: int) -> dict:
    """A hand-written training loop over the same module, data and optimizer settings."""
    torch.manual_seed(0)
    module, x, y = build_module_and_data(model, batch_size)
    module.train()
    step_fn = (_vae_step if isinstance(module, VaeModule) else _gan_step)(module)
    step_ends: list[float] = []
    first_step_wall = None
    for xb, yb in _batches(x, y, batch_size, steps):
        if first_step_wall is None:
            first_step_wall = time.time()
        step_fn(module.to_model_range(xb), yb)
        step_ends.append(time.perf_counter())
    return timing_record(first_step_wall, step_ends)


class _StepBatches:
    """`_batches` as a loader Lightning can iterate (and measure: it has a length)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, steps: int) -> None:
        self.x, self.y, self.batch_size, self.steps = x, y, batch_size, steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return _batches(self.x, self.y, self.batch_size, self.steps)

    def __len__(self) -> int:
        return self.steps


def lightning_loop(model: str, batch_size: int, steps: int) -> dict:
    """The raw loop's step inside a bare ``lightning.Trainer``: Lightning's own cost per step.

    The anchor of Lightning's parity benchmark against plain PyTorch: the same module, batches and
    optimizer as `raw_loop`, as a minimal LightningModule (the VAE with automatic optimization, the
    GANs with manual optimization through ``self.optimizers()`` and ``manual_backward``, the pattern
    Lightning documents for GANs), and a Trainer with no logger, checkpointing, progress bar or model
    summary. What `src.train` costs beyond this is the framework's own share.
    """
    torch.manual_seed(0)
    module, x, y = build_module_and_data(model, batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        timer = StepTimer(str(Path(tmp) / "steps.json"))
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[timer],
            default_root_dir=tmp,
        )
        bare = _BareVae(module) if isinstance(module, VaeModule) else _BareGan(module)
        trainer.fit(bare, train_dataloaders=_StepBatches(x, y, batch_size, steps))
    return timing_record(timer.first_step_wall, timer.step_ends)


class _BareVae(pl.LightningModule):
    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        m = self.module
        log_px, kl = m.elbo_terms(m.likelihood_targets(m.to_model_range(x), None), y, None)
        return (-log_px + m.beta * kl).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.module.optimizer_factory(params=self.module.parameters())


class _BareGan(pl.LightningModule):
    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module
        self.automatic_optimization = False
        self.step_fn = None

    def on_train_start(self) -> None:
        optimizer_g, optimizer_d = self.optimizers()
        self.step_fn = _gan_step(self.module, optimizer_g, optimizer_d, self.manual_backward)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.step_fn(self.module.to_model_range(x), y)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        m = self.module
        return [
            m.optimizer_g(params=m.generator.parameters()),
            m.optimizer_d(params=m.discriminator.parameters()),
        ]


def _vae_step(module):
    optimizer = module.optimizer_factory(params=module.parameters())

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        log_px, kl = module.elbo_terms(module.likelihood_targets(x, None), y, None)
        loss = (-log_px + module.beta * kl).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _gan_step(module, optimizer_g=None, optimizer_d=None, backward=torch.Tensor.backward):
    """One discriminator update per real batch (with the config's penalties), and a generator update
    every ``n_critic``-th batch, as `GanModule.training_step` trains. The optimizers and the backward
    call are the raw loop's own unless given (the bare-Lightning side passes Lightning's)."""
    optimizer_g = optimizer_g or module.optimizer_g(params=module.generator.parameters())
    optimizer_d = optimizer_d or module.optimizer_d(params=module.discriminator.parameters())
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
        backward(d_loss)
        optimizer_d.step()
        if next(batches) % module.n_critic:
            return
        discriminator.requires_grad_(False)
        g_loss = loss.generator(discriminator(generator(module.sample_latents(n), None), None))
        optimizer_g.zero_grad(set_to_none=True)
        backward(g_loss)
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


def overhead(model: str, batch_size: int, steps: int, warmup: int, rounds: int, threads: int) -> dict:
    """The framework's extra milliseconds per step at a batch small enough for compute to be cheap.

    ``rounds`` rounds of three runs, all in one fresh process (with ``threads`` threads): the raw
    loop, the same step in a bare Lightning Trainer, and `src.train`'s own task on the config its
    command line composes. One process, because the same step's median time differs by several ms
    from one process to the next on this kind of machine (memory layout, where the scheduler puts
    it), more than the effect measured; within a process the three sides see the same conditions.
    Each run's median step time after ``warmup``; the extra cost is `src.train` minus raw within
    each round (median over rounds and its range), split into Lightning's own share (bare Lightning
    minus raw) and this framework's (`src.train` minus bare Lightning: its modules, callbacks and
    logger). The mean includes the per-epoch work (checkpoint writes, sample grids), the median does
    not. Lightning's profiler on a separate run of the same command breaks the loop work down by hook.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rounds.json"
        command = [sys.executable, "-m", "experiments.benchmarks.training", "rounds", f"--model={model}"]
        command += [f"--batch-size={batch_size}", f"--steps={steps}", f"--repeats={rounds}", f"--out={out}"]
        proc = subprocess.run(command, cwd=ROOT, env=_env(threads), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"overhead rounds failed:\n{proc.stderr[-3000:]}")
        runs = json.loads(out.read_text())

    def per_run(side: int, reduce) -> list[float]:
        return [reduce(step_milliseconds(run[side]["step_ends"], warmup)) for run in runs]

    raw, bare, fw = (per_run(side, statistics.median) for side in range(3))
    raw_mean, fw_mean = per_run(0, statistics.mean), per_run(2, statistics.mean)
    extra = [f - r for f, r in zip(fw, raw)]
    lightning_extra = [b - r for b, r in zip(bare, raw)]
    own_extra = [f - b for f, b in zip(fw, bare)]
    return {
        "model": model,
        "batch_size": batch_size,
        "threads": threads,
        "steps": steps,
        "warmup_steps": warmup,
        "rounds": rounds,
        "raw_step_ms": statistics.median(raw),
        "lightning_step_ms": statistics.median(bare),
        "framework_step_ms": statistics.median(fw),
        "extra_ms_per_step": statistics.median(extra),
        "extra_ms_per_step_range": [min(extra), max(extra)],
        "extra_ms_per_step_mean": statistics.median(f - r for f, r in zip(fw_mean, raw_mean)),
        "lightning_extra_ms_per_step": statistics.median(lightning_extra),
        "lightning_extra_ms_per_step_range": [min(lightning_extra), max(lightning_extra)],
        "framework_own_extra_ms_per_step": statistics.median(own_extra),
        "framework_own_extra_ms_per_step_range": [min(own_extra), max(own_extra)],
        "rounds_extra_ms": extra,
        "profile": hook_profile(model, batch_size, steps, threads),
    }


def rounds(model: str, batch_size: int, steps: int, repeats: int) -> list[list[dict]]:
    """``repeats`` rounds of (raw loop, bare Lightning, `src.train`) in this process, each returned
    in that order. The order they run in rotates from round to round (raw first, then bare Lightning
    first, then `src.train` first, ...): a run's place in the process (heap, caches, how long the
    process has run) then weighs on every side alike."""
    loops = (raw_loop, lightning_loop, framework_loop)
    out = []
    for index in range(repeats):
        order = [(index + k) % len(loops) for k in range(len(loops))]
        measured = {side: loops[side](model, batch_size, steps) for side in order}
        out.append([measured[side] for side in range(len(loops))])
    return out


# Profiler actions that contain the model's own compute (forward, backward, optimizer update) or
# wrap the whole loop: left out of the per-step breakdown of what the loop adds around them.
COMPUTE_ACTIONS = (
    "Total",
    "run_training_epoch",
    "run_training_batch",
    "optimizer_step",  # "[LightningModule]X.optimizer_step", and "optimizer_step" under manual optimization
    ".training_step",
    ".backward",
)
# Hooks Lightning times inside `[Strategy]...batch_to_device`: listed, not added to the sum twice.
NESTED_ACTIONS = ("batch_transfer", "transfer_batch_to_device")


def hook_profile(model: str, batch_size: int, steps: int, threads: int) -> dict:
    """Lightning's simple profiler on a `src.train` run of the same command: milliseconds per
    training batch of each per-step hook, callback and loop action outside the model's compute,
    largest first.

    Each action is timed where it runs, so these figures do not carry the run-to-run spread of the
    rounds' step times. ``training_step`` itself (the model's loss and its ``self.log`` calls) is
    compute here; the rounds measure it.
    """
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        run_framework(
            model,
            batch_size,
            steps,
            threads,
            workdir,
            extra=[
                "+trainer.profiler._target_=lightning.pytorch.profilers.SimpleProfiler",
                f"+trainer.profiler.dirpath={workdir}",
                "+trainer.profiler.filename=profile",
            ],
        )
        rows = parse_simple_profile((workdir / "fit-profile.txt").read_text())
    batches = rows["run_training_batch"][0]
    per_step = {
        action: 1e3 * total / batches
        for action, (calls, total) in rows.items()
        if calls >= batches and not any(part in action for part in COMPUTE_ACTIONS)
    }
    ordered = dict(sorted(per_step.items(), key=lambda item: -item[1]))
    return {
        "batches": batches,
        "hooks_ms_per_step": sum(v for k, v in ordered.items() if not any(n in k for n in NESTED_ACTIONS)),
        "callbacks_ms_per_step": sum(v for k, v in ordered.items() if k.startswith("[Callback]")),
        "ms_per_step": ordered,
    }


def parse_simple_profile(report: str) -> dict[str, tuple[int, float]]:
    """``{action: (calls, total seconds)}`` from a SimpleProfiler report; callback names lose their
    state dict (``ModelCheckpoint{...}.on_train_batch_end`` -> ``ModelCheckpoint.on_train_batch_end``)."""
    rows: dict[str, tuple[int, float]] = {}
    for line in report.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[2].isdigit():
            continue
        action = re.sub(r"\{.*\}", "", cells[0])
        calls, total = rows.get(action, (0, 0.0))
        rows[action] = (calls + int(cells[2]), total + float(cells[3]))
    return rows


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
    parser.add_argument(
        "mode", choices=["compare", "overhead", "startup", "raw", "lightning", "rounds", "data-load"]
    )
    parser.add_argument("--model", choices=list(MODEL_OVERRIDES), default="vae")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument(
        "--repeats", type=int, default=3, help="compare: runs per side; overhead and rounds: rounds"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.mode == "raw":
        result = raw_loop(args.model, args.batch_size, args.steps)
    elif args.mode == "lightning":
        result = lightning_loop(args.model, args.batch_size, args.steps)
    elif args.mode == "rounds":
        result = rounds(args.model, args.batch_size, args.steps, args.repeats)
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
