"""GANs: every model on every data option, step semantics, EMA, resume, clipping, precision, divergence."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import seed_everything

from src.data.toy2d import MIXTURES, mixture_modes
from src.metrics.modes import mode_statistics
from src.models.base import GenerativeModule
from src.models.checkpoint import read_checkpoint
from src.models.gan import GanModule
from src.models.losses import NonSaturatingLoss
from src.runtime.build import build
from src.runtime.run import read_metrics_json, run_task
from src.train import train
from src.utils.errors import UserError

GANS = ["dcgan", "wgan_gp", "sngan", "cgan", "gan_mlp"]
# Tiny networks; no FID is logged under metrics=none, so best.ckpt is the latest.
FAST_GAN = [
    "model.g_width=8",
    "model.d_width=8",
    "model.latent_dim=8",
    "model.mlp_width=32",
    "model.mlp_depth=2",
    "model.monitor=null",
]
POINTS = ["data.n_train=2000", "data.n_val=500", "data.n_test=500", "data.batch_size=64"]
DATASETS = {
    "mnist": ["data=mnist", "data.source=files"],
    "fashion_mnist": ["data=fashion_mnist", "data.source=files"],
    "cifar10": ["data=cifar10", "data.source=files"],
    "image_folder": ["data=image_folder"],  # 64 px
    "ring8": ["data=ring8", *POINTS],
    "grid25": ["data=grid25", *POINTS],
}
LABELLED = {"mnist", "fashion_mnist", "cifar10", "image_folder"}


def _data(name: str, image_root: Path) -> list[str]:
    return DATASETS[name] + ([f"data.root={image_root}"] if name == "image_folder" else [])


def _checkpoint(cfg, name: str = "last.ckpt") -> dict:
    return read_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / name)


MATRIX = [(m, d) for m in GANS for d in DATASETS if not (m == "cgan" and d not in LABELLED)]
# `make test-fast` runs a covering part of the matrix (every GAN twice, every data option at least
# once, images and points, 28/32/64 px); `make test` runs all of it.
FAST_PAIRS = {
    ("dcgan", "cifar10"),
    ("dcgan", "ring8"),
    ("wgan_gp", "image_folder"),
    ("wgan_gp", "mnist"),
    ("sngan", "fashion_mnist"),
    ("sngan", "grid25"),
    ("cgan", "mnist"),
    ("cgan", "image_folder"),
    ("gan_mlp", "cifar10"),
    ("gan_mlp", "ring8"),
}


@pytest.mark.parametrize(
    ("model", "data"),
    [pytest.param(m, d, marks=() if (m, d) in FAST_PAIRS else pytest.mark.slow) for m, d in MATRIX],
    ids=[f"{m}-{d}" for m, d in MATRIX],
)
def test_fast_dev_run_of_every_gan_on_every_data_option(
    make_cfg, image_root: Path, model: str, data: str
) -> None:
    # n_critic=1: the one batch of fast_dev_run makes a discriminator and a generator update.
    overrides = [f"model={model}", *FAST_GAN, *_data(data, image_root), "debug=fdr", "model.n_critic=1"]
    result = train(make_cfg("train", overrides))
    for name in ("loss/d", "loss/g", "test/d_real", "test/d_fake", "test/d_margin", "test/d_acc"):
        assert math.isfinite(result.metrics[name]), name
    assert result.metrics["test/d_margin"] == pytest.approx(
        result.metrics["test/d_real"] - result.metrics["test/d_fake"], abs=1e-5
    )
    assert 0 <= result.metrics["test/d_acc"] <= 1
    assert result.metrics["global_step"] == 1


# Each GAN's default budget (conf/trainer/budget/): generator updates, whole epochs of the bundled
# MNIST subset (4,000 images, 31 batches of 128), so the last update ends a validated epoch.
DEFAULT_BUDGETS = {"dcgan": 4030, "gan_mlp": 3100, "wgan_gp": 2046, "sngan": 6200, "cgan": 6200}
BUNDLED_BATCHES_PER_EPOCH = 4000 // 128


@pytest.mark.parametrize("model", GANS)
def test_each_gan_has_a_default_budget_in_generator_updates_that_the_command_line_overrides(
    make_cfg, model: str
) -> None:
    cfg = make_cfg("train", [f"model={model}"], fast=False)
    updates = DEFAULT_BUDGETS[model]
    assert (cfg.trainer.max_steps, cfg.trainer.max_epochs) == (updates, -1)
    assert cfg.data.batch_size == 128
    assert updates * cfg.model.n_critic % BUNDLED_BATCHES_PER_EPOCH == 0
    assert make_cfg("train", [f"model={model}", "trainer.max_steps=7"], fast=False).trainer.max_steps == 7
    short = make_cfg("train", [f"model={model}", "trainer.max_epochs=2"], fast=False).trainer
    assert (short.max_epochs, short.max_steps) == (2, updates)
    vae = make_cfg("train", ["model=vae"], fast=False).trainer
    assert (vae.max_epochs, vae.max_steps) == (10, -1)


RESNET = [(m, d) for m in ("sngan", "cgan") for d in ("mnist", "cifar10", "image_folder")]


@pytest.mark.parametrize(("model", "data"), RESNET, ids=[f"{m}-resnet-{d}" for m, d in RESNET])
def test_the_resnet_recipe_of_sngan_and_cgan_trains(
    make_cfg, image_root: Path, model: str, data: str
) -> None:
    # The papers' ResNet networks with 5 critic updates (the defaults are the CPU-sized DCGAN stack).
    overrides = [
        f"model={model}",
        *FAST_GAN,
        *_data(data, image_root),
        "model.arch=resnet",
        "model.n_critic=5",
    ]
    budget = ["trainer.limit_train_batches=5", "trainer.max_epochs=1", "data.batch_size=2"]
    result = train(make_cfg("train", [*overrides, *budget]))
    assert result.metrics["global_step"] == 1
    assert math.isfinite(result.metrics["loss/g"])


MNIST = DATASETS["mnist"]


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["model=cgan", *DATASETS["ring8"]], ["conditional", "labelled"]),
        (["model=cgan", *MNIST, "model.g_norm=layer"], ["model.g_norm=batch"]),
        (["model=wgan_gp", *MNIST, "model.d_norm=batch"], ["model.gp_weight", "model.d_norm=layer"]),
        (["model=dcgan", *MNIST, "model.r1_weight=1", "model.d_norm=batch"], ["model.r1_weight"]),
        (["model=wgan_gp", *MNIST, "model.gp_weight=0"], ["WassersteinLoss", "model.gp_weight>0"]),
        (["model=sngan", *MNIST, "data.image_size=30"], ["30x30", "data.image_size"]),
        (["model=dcgan", *MNIST, "+trainer.accumulate_grad_batches=2"], ["accumulate", "data.batch_size"]),
    ],
)
def test_impossible_gan_configs_stop_before_training(make_cfg, overrides, fragments) -> None:
    cfg = make_cfg("train", [*FAST_GAN, *overrides])
    with pytest.raises(UserError) as error:
        train(cfg)
    for fragment in fragments:
        assert fragment in str(error.value)
    assert not list(Path(cfg.paths.output_dir).rglob("*.ckpt"))


def test_global_step_counts_generator_updates_and_schedules_follow_it(make_cfg) -> None:
    """n_critic=3, max_steps=4: 12 real batches (discriminator updates), 4 generator updates.

    If Lightning changes how it counts manual optimizer steps, this fails instead of every
    schedule silently running n_critic + 1 times faster.
    """
    batches = []
    cfg = make_cfg(
        "train",
        [
            "model=wgan_gp",
            *FAST_GAN,
            *DATASETS["ring8"],
            "model.n_critic=3",
            "trainer.max_steps=4",
            "trainer.limit_train_batches=100",
            "trainer.max_epochs=5",
            "test=false",
            "+model.scheduler_g._target_=torch.optim.lr_scheduler.LinearLR",
            "+model.scheduler_g._partial_=true",
            "+model.scheduler_g.start_factor=1.0",
            "+model.scheduler_g.end_factor=0.0",
            "+model.scheduler_g.total_iters=8",
        ],
    )
    original = GanModule.training_step

    def counting(self, batch, batch_idx):
        batches.append(batch_idx)
        return original(self, batch, batch_idx)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GanModule, "training_step", counting)
        result = train(cfg)
    assert result.metrics["global_step"] == 4
    assert len(batches) == 12
    checkpoint = _checkpoint(cfg)
    assert checkpoint["global_step"] == 4
    # The generator's schedule stepped once per generator update: 4 of 8 steps to zero.
    base_lr = cfg.model.optimizer_g.lr
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(base_lr / 2)
    assert checkpoint["optimizer_states"][1]["param_groups"][0]["lr"] == pytest.approx(
        cfg.model.optimizer_d.lr
    )


def test_ema_weights_differ_from_the_raw_ones_and_are_the_ones_sampled(make_cfg) -> None:
    cfg = make_cfg(
        "train",
        ["model=dcgan", *FAST_GAN, *DATASETS["ring8"], "model.ema=true", "model.ema_decay=0.9", "test=false"],
    )
    train(cfg)
    checkpoint = _checkpoint(cfg)
    assert any(key.startswith("generator_ema.module.") for key in checkpoint["state_dict"])
    model = GenerativeModule.from_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    raw = dict(model.generator.named_parameters())
    averaged = dict(model.generator_ema.module.named_parameters())
    assert raw.keys() == averaged.keys()
    assert all(not p.requires_grad for p in averaged.values())
    assert any(not torch.equal(raw[name], averaged[name]) for name in raw)

    z = torch.randn(64, model.latent_dim, generator=torch.Generator().manual_seed(7))
    sampled = model.sample(64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert torch.allclose(sampled, model.generator_ema.module(z))
        assert not torch.allclose(sampled, model.generator(z))


def test_before_ema_start_the_average_follows_the_generator(make_cfg) -> None:
    cfg = make_cfg(
        "train",
        [
            "model=dcgan",
            *FAST_GAN,
            *DATASETS["ring8"],
            "model.ema=true",
            "model.ema_start=1000",
            "test=false",
        ],
    )
    train(cfg)
    model = GenerativeModule.from_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    for (name, raw), (_, averaged) in zip(
        model.generator.state_dict().items(), model.generator_ema.module.state_dict().items()
    ):
        assert torch.equal(raw.float(), averaged.float()), name


def test_epoch_without_a_generator_update_still_leaves_last_ckpt(make_cfg) -> None:
    """n_critic=5 and 3 real batches: one epoch trains only the discriminator; last.ckpt is written."""
    cfg = make_cfg(
        "train",
        [
            "model=wgan_gp",
            *FAST_GAN,
            *DATASETS["ring8"],
            "model.n_critic=5",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "test=false",
        ],
    )
    train(cfg)
    checkpoint = _checkpoint(cfg)
    assert checkpoint["global_step"] == 0
    assert checkpoint["epoch"] == 0


def test_a_gan_resumed_under_its_step_budget_continues_to_exactly_that_many_updates(make_cfg) -> None:
    # The default budgets are max_steps with max_epochs=-1; a requeued or resumed run must make
    # the remaining generator updates, not stop early nor train one epoch more.
    common = ["model=wgan_gp", *FAST_GAN, *DATASETS["ring8"], "model.n_critic=2", "test=false"]
    common += ["trainer.limit_train_batches=6"]
    first = make_cfg("train", [*common, "trainer.max_epochs=1"])
    train(first)
    assert first.trainer.max_steps == 2046  # the default budget, cut here by max_epochs=1
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = make_cfg(
        "train", [*common, "trainer.max_epochs=-1", "trainer.max_steps=7", f"ckpt_path={last}"]
    )
    assert train(resumed).metrics["global_step"] == 7


def test_resume_restores_both_optimizers_the_ema_and_the_step_count(make_cfg) -> None:
    common = [
        "model=wgan_gp",
        *FAST_GAN,
        *DATASETS["ring8"],
        "model.n_critic=2",
        "model.ema=true",
        "test=false",
        "trainer.max_steps=-1",  # epochs decide (resuming under max_steps: the next test)
    ]
    first = make_cfg("train", [*common, "trainer.max_epochs=1", "trainer.limit_train_batches=6"])
    train(first)
    checkpoint = _checkpoint(first)
    assert checkpoint["global_step"] == 3
    assert len(checkpoint["optimizer_states"]) == 2
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"

    seen: dict = {}
    original = GanModule.on_train_start

    def spy(self) -> None:
        original(self)
        seen["step"] = self.global_step
        seen["optimizers"] = [copy.deepcopy(opt.optimizer.state_dict()) for opt in self.optimizers()]
        seen["ema"] = {k: v.clone() for k, v in self.generator_ema.state_dict().items()}

    ends = []
    for _ in range(2):  # twice from the same checkpoint: a resumed run is reproducible
        resumed = make_cfg(
            "train", [*common, "trainer.max_epochs=2", "trainer.limit_train_batches=6", f"ckpt_path={last}"]
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(GanModule, "on_train_start", spy)
            result = train(resumed)
        assert result.metrics["global_step"] == 6
        ends.append(_checkpoint(resumed)["state_dict"])

    assert seen["step"] == 3
    for restored, saved in zip(seen["optimizers"], checkpoint["optimizer_states"]):
        assert restored["state"].keys() == saved["state"].keys()
        for index, state in saved["state"].items():
            assert torch.equal(restored["state"][index]["exp_avg"], state["exp_avg"])
            assert float(restored["state"][index]["step"]) == float(state["step"])
    for key, value in seen["ema"].items():
        assert torch.equal(value, checkpoint["state_dict"][f"generator_ema.{key}"]), key
    assert all(torch.equal(ends[0][key], ends[1][key]) for key in ends[0])


def test_trainer_gradient_clipping_applies_to_both_networks(make_cfg) -> None:
    # SGD with lr 1 moves each weight by exactly its (clipped) gradient.
    clip = 1e-4
    sgd = [
        override
        for name in ("optimizer_g", "optimizer_d")
        for override in (
            f"model.{name}._target_=torch.optim.SGD",
            f"model.{name}.lr=1.0",
            f"~model.{name}.betas",
        )
    ]
    overrides = [
        "model=dcgan",
        *FAST_GAN,
        *DATASETS["ring8"],
        *sgd,
        "trainer.max_steps=1",
        "test=false",
        f"trainer.gradient_clip_val={clip}",
        "trainer.gradient_clip_algorithm=value",
    ]
    cfg = make_cfg("train", overrides)
    seed_everything(cfg.seed, verbose=False)  # as `train` does: the same initial weights
    initial = build(cfg.model).state_dict()
    train(cfg)
    trained = _checkpoint(cfg)["state_dict"]
    for prefix in ("generator.", "discriminator."):
        moved = [
            (trained[k] - initial[k]).abs().max()
            for k in initial
            if k.startswith(prefix) and k.endswith("weight")
        ]
        assert max(moved) <= clip * (1 + 1e-3), prefix
        assert max(moved) > 0, prefix


@pytest.mark.parametrize("model", ["dcgan", "wgan_gp"])
def test_bf16_mixed_precision_trains(make_cfg, model: str) -> None:
    overrides = [f"model={model}", *FAST_GAN, "data.source=files", "debug=fdr", "model.n_critic=1"]
    result = train(make_cfg("train", [*overrides, "hardware.precision=bf16-mixed"]))
    for name in ("loss/d", "loss/g", "test/d_real"):
        assert math.isfinite(result.metrics[name]), name


def test_nan_generator_loss_stops_the_run_and_keeps_the_last_good_checkpoint(make_cfg, monkeypatch) -> None:
    # The NaN goes through the backward pass: the live weights diverge, the checkpoint must not.
    epoch = {"now": 0}
    original = NonSaturatingLoss.generator

    def poisoned(self, fake):
        loss = original(self, fake)
        return loss * float("nan") if epoch["now"] == 1 else loss

    def track_epoch(self) -> None:
        epoch["now"] = self.current_epoch

    monkeypatch.setattr(NonSaturatingLoss, "generator", poisoned)
    monkeypatch.setattr(GanModule, "on_train_epoch_start", track_epoch, raising=False)
    cfg = make_cfg("train", ["model=dcgan", *FAST_GAN, *DATASETS["ring8"], "trainer.max_epochs=3"])
    with pytest.raises(SystemExit) as exit_info:
        run_task(train, cfg)
    assert exit_info.value.code == 1
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "loss/g" in metrics["reason"] and "NaN" in metrics["reason"]
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 3  # written after the first (good) epoch only
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_short_toy_run_covers_more_modes_than_at_initialisation(make_cfg) -> None:
    """A few seconds of the toy 2-D preset on grid25 spreads the generator over more modes."""
    cfg = make_cfg(
        "train",
        [
            "experiment=toy2d",
            "data=grid25",
            "data.n_train=20000",
            "trainer.max_steps=300",
            "trainer.check_val_every_n_epoch=1",
            "test=false",
            "trainer.enable_progress_bar=false",
        ],
        fast=False,
    )
    modes, sigma = mixture_modes("grid25"), MIXTURES["grid25"]

    def coverage(model) -> dict[str, float]:
        samples = model.eval().sample(2500, generator=torch.Generator().manual_seed(0))
        return mode_statistics(samples, modes, sigma)

    seed_everything(cfg.seed, verbose=False)
    before = coverage(build(cfg.model))
    train(cfg)
    after = coverage(
        GenerativeModule.from_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    )
    # At initialisation the generator puts (nearly) every sample on the centre mode.
    assert after["modes"] >= before["modes"] + 10, (before, after)
    assert after["rkl"] < before["rkl"], (before, after)
    assert list((Path(cfg.paths.output_dir) / "samples").glob("step_*.png"))  # scatter plots


def test_run_leaves_metrics_json_and_scatter_plots(make_cfg) -> None:
    cfg = make_cfg("train", ["model=dcgan", *FAST_GAN, *DATASETS["ring8"], "trainer.max_epochs=2"])
    assert run_task(train, cfg) is None
    out = Path(cfg.paths.output_dir)
    metrics = read_metrics_json(out)
    assert metrics["status"] == "ok" and metrics["global_step"] == 6
    for name in ("loss/d", "loss/g", "val/d_real", "val/d_fake", "test/d_real"):
        assert math.isfinite(metrics[name]), name
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000003.png", "step_0000006.png"]


def test_projection_discriminator_learns_which_class_an_image_shows() -> None:
    # The conditional signal a cGAN's generator gets is only as good as the critic's class projection.
    # With spectral norm and the SNGAN optimizer, 200 hinge steps must separate ten classes whose
    # features differ; an embedding left at nn.Embedding's N(0, 1) start stays at chance (~10 %).
    from src.models.networks.layers import ProjectionHead

    torch.manual_seed(0)
    features = 512
    head = ProjectionHead(features, num_classes=10, spectral=True)
    centers = torch.relu(torch.randn(10, features))
    optimizer = torch.optim.Adam(head.parameters(), lr=2e-4, betas=(0.0, 0.9))

    def draw(labels: torch.Tensor) -> torch.Tensor:
        return centers[labels] + 0.5 * torch.rand(len(labels), features)

    for _ in range(200):
        labels = torch.randint(0, 10, (64,))
        h = draw(labels)
        wrong = (labels + torch.randint(1, 10, (64,))) % 10
        loss = torch.relu(1 - head(h, labels)).mean() + torch.relu(1 + head(h, wrong)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        labels = torch.arange(10).repeat(20)
        h = draw(labels)
        scores = torch.stack([head(h, torch.full_like(labels, c)) for c in range(10)], dim=1)
    assert (scores.argmax(1) == labels).float().mean() >= 0.9


def test_gan_mlp_is_the_fully_connected_gan_of_the_worked_example(make_cfg) -> None:
    from torch import nn

    from src.runtime.build import build_run_parts

    cfg = make_cfg("train", ["model=gan_mlp", *MNIST])
    _, _, model = build_run_parts(cfg)
    sizes = lambda net: [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, nn.Linear)]  # noqa: E731
    assert sizes(model.generator) == [(100, 256), (256, 512), (512, 1024), (1024, 784)]
    assert sizes(model.discriminator) == [(784, 1024), (1024, 512), (512, 256), (256, 1)]
    assert type(model.loss).__name__ == "NonSaturatingLoss"
    optimizer_g, optimizer_d = (c["optimizer"] for c in model.configure_optimizers())
    for optimizer in (optimizer_g, optimizer_d):
        assert optimizer.defaults["lr"] == 2e-4 and optimizer.defaults["betas"] == (0.5, 0.999)
    images = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3, 1, 28, 28) and float(images.min()) >= 0 and float(images.max()) <= 1
