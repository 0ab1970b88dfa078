"""Differentially private training (privacy=dp): plan, budget, clipping, records, resume, refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from src.data.loader import TensorBatchLoader
from src.models.base import PRIVACY_KEY
from src.privacy import DifferentialPrivacy, planned_updates
from src.runtime.run import read_metrics_json, run_task
from src.train import train
from src.utils.errors import UserError
from tests.conftest import FAST_VAE, run_cli

PRIVATE_VAE = [
    "model=cvae",
    *FAST_VAE,
    "data.source=files",
    "privacy=dp",
    "metrics=none",
    "model.monitor=null",
]
# The conditional GAN with a private discriminator: DCGAN networks, no spectral norm (see src/privacy).
PRIVATE_GAN = [
    "model=cgan",
    "model.arch=dcgan",
    "model.spectral_norm=false",
    "model.g_width=8",
    "model.d_width=8",
    "model.latent_dim=8",
    "model.ema=false",
    "data.source=files",
    "privacy=dp",
    "metrics=none",
    "model.monitor=null",
]


def _rdp_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = [(sigma, q, steps)]
    return accountant.get_epsilon(delta=delta)


# ---------------------------------------------------------------------------- plan and budget
def test_planned_updates_follow_the_trainer_schedule() -> None:
    assert planned_updates(13, {"max_epochs": 3, "max_steps": -1}) == 39
    assert planned_updates(13, {"max_epochs": 3, "max_steps": 10}) == 10
    assert planned_updates(13, {"max_epochs": 3, "max_steps": -1, "limit_train_batches": 2}) == 6
    assert planned_updates(13, {"max_epochs": 2, "max_steps": -1, "limit_train_batches": 0.5}) == 12
    assert planned_updates(13, {"max_epochs": 5, "max_steps": -1, "fast_dev_run": True}) == 1
    # GANs: max_steps counts generator updates, each after n_critic private discriminator updates.
    assert planned_updates(13, {"max_epochs": 9, "max_steps": 4}, updates_per_step=5) == 20
    with pytest.raises(UserError, match="finite schedule"):
        planned_updates(13, {"max_epochs": -1, "max_steps": -1})


def test_solved_noise_multiplier_matches_opacus_accountant(make_cfg, mnist_files) -> None:
    cfg = make_cfg("train", [*PRIVATE_VAE, "trainer.max_epochs=4", "trainer.limit_train_batches=null"])
    privacy = DifferentialPrivacy(target_epsilon=3.0)

    class Model:
        privacy_engine = None

        def private_updates_per_step(self) -> int:
            return 1

        def private_part(self) -> str:
            return "everything"

    mnist_files.batch_size = 16
    record = privacy.plan(Model(), mnist_files, cfg.trainer)
    n = len(mnist_files.split("train")[0])
    q, steps, delta = 16 / n, 4 * (n // 16), 1 / (10 * n)
    assert record["sample_rate"] == q and record["planned_steps"] == steps and record["delta"] == delta
    expected = get_noise_multiplier(target_epsilon=3.0, target_delta=delta, sample_rate=q, steps=steps)
    assert record["noise_multiplier"] == pytest.approx(expected, rel=1e-12)
    # The solved noise meets the target, and within the tolerance it is the least noise that does.
    assert _rdp_epsilon(expected, q, steps, delta) <= 3.0
    assert _rdp_epsilon(expected * 0.98, q, steps, delta) > 3.0 - 0.05
    assert mnist_files.poisson_sample_rate == q
    mnist_files.poisson_sample_rate = None
    mnist_files.batch_size = 128


def test_poisson_batches_vary_around_the_rate_and_repeat_per_epoch() -> None:
    x = torch.arange(1000)
    epoch = {"value": 0}
    loader = TensorBatchLoader([x], 50, True, True, seed=3, epoch_fn=lambda: epoch["value"], sample_rate=0.05)
    assert len(loader) == 20
    first = [b[0] for b in loader]
    sizes = torch.tensor([len(b) for b in first], dtype=torch.float)
    assert len(set(sizes.tolist())) > 3 and abs(sizes.mean().item() - 50) < 10
    assert all(len(set(b.tolist())) == len(b) for b in first)  # no example twice in one batch
    assert all(torch.equal(a, b[0]) for a, b in zip(first, loader))  # same epoch, same batches
    epoch["value"] = 1
    assert not all(torch.equal(a, b[0]) for a, b in zip(first, loader))


# ---------------------------------------------------------------------------- clipping
def _summed_update(model, engine: DifferentialPrivacy, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The noiseless DP-SGD update direction (sum of clipped per-example gradients) of one batch."""
    optimizer = engine.make_private_optimizer(torch.optim.SGD(model.parameters(), lr=0.0))
    optimizer.zero_grad()
    model.train()
    # The objective at the posterior mean: deterministic per example, so the two batches below give
    # their shared examples the same gradients (a sampled latent would differ with the batch size).
    mean, logvar = model.encode(x, y)
    kl = 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar).sum(1)
    (-model.log_likelihood(x, model.decode(mean, y)) + kl).sum().backward()
    optimizer.step()
    return torch.cat([p.grad.flatten() for p in optimizer.params]) * engine.expected_batch_size


def _change_from_one_example(make_cfg, max_grad_norm: float) -> float:
    """Norm of what adding one (outlying) example changes in the summed, clipped gradient."""
    from src.runtime.build import build, build_hardware

    cfg = make_cfg("train", PRIVATE_VAE)
    model = build(cfg.model)
    engine = DifferentialPrivacy(noise_multiplier=1e-12, max_grad_norm=max_grad_norm)
    engine.check(model, cfg.trainer, build_hardware(cfg))
    engine.expected_batch_size, engine.sample_rate, engine.noise_multiplier = 8, 0.1, 1e-12
    torch.manual_seed(0)
    x, y = torch.rand(8, 1, 28, 28).round(), torch.randint(10, (8,))
    outlier = torch.ones(1, 1, 28, 28)  # an all-white image: a large gradient
    with_outlier = _summed_update(model, engine, torch.cat([x, outlier]), torch.cat([y, y[:1]]))
    without = _summed_update(model, engine, x, y)
    return (with_outlier - without).norm().item()


def test_per_example_clipping_bounds_each_examples_contribution(make_cfg) -> None:
    assert _change_from_one_example(make_cfg, max_grad_norm=1.0) <= 1.0 + 1e-4
    # The same measurement without clipping (a norm no gradient reaches) breaks the bound, so the
    # check above is what clipping buys, not a property of this model or data.
    assert _change_from_one_example(make_cfg, max_grad_norm=1e9) > 1.5


# ---------------------------------------------------------------------------- training and records
def test_private_cvae_trains_within_budget_and_records_the_guarantee(make_cfg, tmp_path) -> None:
    out_dir = tmp_path / "synthetic"
    cfg = make_cfg(
        "train",
        [
            *PRIVATE_VAE,
            "privacy.target_epsilon=8",
            "trainer.max_epochs=2",
            "export.enabled=true",
            "export.n=20",
            "export.score=false",
            f"export.out_dir={out_dir}",
        ],
    )
    assert run_task(train, cfg) is None
    run = Path(cfg.paths.output_dir)
    metrics = read_metrics_json(run)
    record = metrics["privacy"]
    n = record["n_train"]
    assert record["steps"] == record["planned_steps"] == 2 * 3  # limit_train_batches=3, two epochs
    assert record["sample_rate"] == 16 / n and record["delta"] == 1 / (10 * n)
    expected = _rdp_epsilon(
        record["noise_multiplier"], record["sample_rate"], record["steps"], record["delta"]
    )
    assert record["epsilon"] == pytest.approx(expected, rel=1e-9) and record["epsilon"] <= 8.0
    assert metrics["privacy/epsilon"] == record["epsilon"]
    assert record["version"] == "1.6.0" and record["accountant"] == "rdp"
    for name in ("best.ckpt", "last.ckpt"):
        stored = torch.load(run / "checkpoints" / name, weights_only=False)[PRIVACY_KEY]
        assert stored["epsilon"] == record["epsilon"] and stored["steps"] == record["steps"]
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["privacy"]["epsilon"] == record["epsilon"]
    assert manifest["privacy"]["mechanism"].startswith("DP-SGD")
    # The CSV logger saw privacy/epsilon during training.
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "privacy/epsilon" in header


def test_private_gan_charges_each_discriminator_update_once(make_cfg) -> None:
    cfg = make_cfg("train", [*PRIVATE_GAN, "model.n_critic=2", "trainer.max_epochs=2", "test=false"])
    result = train(cfg)
    record = result.extra["privacy"]
    # 3 batches per epoch, 2 epochs: 6 discriminator updates, 3 generator updates.
    assert result.metrics["global_step"] == 3
    assert record["steps"] == 6 and "discriminator" in record["private_part"]
    expected = _rdp_epsilon(record["noise_multiplier"], record["sample_rate"], 6, record["delta"])
    assert record["epsilon"] == pytest.approx(expected, rel=1e-9)


def test_resume_continues_the_accountant(make_cfg) -> None:
    fixed = ["privacy.noise_multiplier=1.5", "privacy.target_epsilon=50", "test=false"]
    whole = train(make_cfg("train", PRIVATE_VAE + fixed + ["trainer.max_epochs=2"]))
    first_cfg = make_cfg("train", PRIVATE_VAE + fixed + ["trainer.max_epochs=1"])
    first = train(first_cfg)
    last = Path(first_cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = train(make_cfg("train", PRIVATE_VAE + fixed + ["trainer.max_epochs=2", f"ckpt_path={last}"]))
    assert first.extra["privacy"]["steps"] == 3
    assert resumed.extra["privacy"]["steps"] == whole.extra["privacy"]["steps"] == 6
    assert resumed.extra["privacy"]["epsilon"] == pytest.approx(whole.extra["privacy"]["epsilon"], rel=1e-12)
    assert resumed.extra["privacy"]["epsilon"] > first.extra["privacy"]["epsilon"]


def test_empty_poisson_batch_is_a_noise_only_update(make_cfg) -> None:
    # batch 1 of ~216: about one batch in e draws nothing; the run must still charge every step.
    cfg = make_cfg(
        "train",
        [
            *PRIVATE_VAE,
            "data.batch_size=1",
            "trainer.limit_train_batches=20",
            "test=false",
            "privacy.target_epsilon=50",
        ],
    )
    result = train(cfg)
    assert result.extra["privacy"]["steps"] == 20
    assert math.isfinite(result.metrics["train/loss"])


# ---------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=cvae", "model.norm=batch"], "batch norm in the encoder"),
        (["model=dcgan", "model.d_norm=batch"], "batch norm in the discriminator"),
        (["model=wgan_gp"], "gradient penalties"),
        (["model=cgan"], "spectral norm"),
        (
            ["model=cvae", "privacy.noise_multiplier=0.3", "privacy.target_epsilon=1"],
            "over privacy.target_epsilon",
        ),
        (["model=cvae", "privacy.target_epsilon=0.000001"], "cannot be met"),
        (["model=cvae", "hardware=ddp_cpu"], "trains in one process"),
        (["model=cvae", "trainer.gradient_clip_val=1.0"], "remove trainer.gradient_clip_val"),
        (["model=vae", "model.likelihood=gaussian", "model.binarize=false"], "gaussian_sigma"),
    ],
)
def test_what_dp_cannot_train_correctly_is_refused_before_work(make_cfg, overrides, message) -> None:
    cfg = make_cfg(
        "train", [*overrides, "data.source=files", "privacy=dp", "metrics=none", "model.monitor=null"]
    )
    with pytest.raises(UserError, match=message):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


@pytest.mark.slow  # a `python -m` start-up (tests/README.md: the slow rule)
def test_refusal_is_one_error_line(tmp_path: Path, data_root: Path) -> None:
    code, _, err = run_cli(
        "src.train",
        "model=cvae",
        "model.norm=batch",
        "privacy=dp",
        f"paths.data_dir={data_root}",
        f"paths.log_dir={tmp_path}",
        "data.source=files",
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and lines[-1].startswith("Error: privacy=dp: batch norm"), err[-500:]
    assert sum(line.startswith("Error:") for line in lines) == 1 and "Traceback" not in err


def test_privacy_none_leaves_configs_as_they_were(make_cfg) -> None:
    cfg = make_cfg("train", ["model=vae"])
    assert cfg.model.norm == "batch" and not cfg.privacy
    gan = make_cfg("train", ["model=dcgan", "privacy=dp"])
    assert OmegaConf.to_container(gan.model, resolve=True)["d_norm"] == "layer"
