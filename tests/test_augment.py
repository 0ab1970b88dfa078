"""Discriminator-side augmentation (model.augment): DiffAugment's operations, ADA's adaptive p, and
the GAN's use of them (both sides of every discriminator call in training, none at evaluation)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from src.models.augment import (
    AdaptiveAugment,
    DiffAugment,
    brightness,
    contrast,
    cutout,
    saturation,
    shift,
    translation,
)
from src.models.base import GenerativeModule
from src.models.checkpoint import read_checkpoint
from src.models.gan import GanModule
from src.models.losses import GradientPenalty
from src.runtime.build import build
from src.train import train
from src.utils.errors import UserError

TINY = [
    "model.g_width=8",
    "model.d_width=8",
    "model.latent_dim=8",
    "model.monitor=null",
    "metrics=none",
    "model.n_critic=1",
]
BUNDLED_MNIST = ["data=mnist", "data.source=bundled"]


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ada(channels: int, p: float = 1.0, **options) -> AdaptiveAugment:
    augment = AdaptiveAugment(channels, **options)
    augment.p = p
    return augment


# ---------------------------------------------------------------------------- the operations
OPERATIONS = {
    "brightness": (brightness, 3),
    "saturation": (saturation, 3),
    "contrast": (contrast, 3),
    "translation": (translation, 1),
    "cutout": (cutout, 1),
    "diffaugment-grey": (DiffAugment(1), 1),
    "diffaugment-rgb": (DiffAugment(3), 3),
    "ada-grey": (_ada(1), 1),
    "ada-rgb-flips-rotations": (_ada(3, xflip=True, rotate=True), 3),
}


@pytest.mark.parametrize("name", OPERATIONS)
def test_every_operation_passes_the_gradient_to_its_input(name: str) -> None:
    operation, channels = OPERATIONS[name]
    x = (torch.rand(6, channels, 16, 16, generator=_seeded(1)) * 2 - 1).requires_grad_(True)
    out = operation(x, _seeded(2))
    assert out.shape == x.shape and out.dtype == x.dtype
    (out * torch.randn(out.shape, generator=_seeded(3))).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert (x.grad.flatten(1).abs().sum(1) > 0).all()  # every image's gradient reaches its input
    # Per image: no output depends on another image of the batch (privacy=dp clips per example).
    x.grad = None
    operation(x, _seeded(2))[0].sum().backward()
    assert x.grad[0].abs().sum() > 0 and not x.grad[1:].any()


@pytest.mark.parametrize(
    "name", ["diffaugment-grey", "diffaugment-rgb", "ada-grey", "ada-rgb-flips-rotations"]
)
def test_a_seeded_generator_makes_the_augmentation_reproducible(name: str) -> None:
    operation, channels = OPERATIONS[name]
    x = torch.rand(8, channels, 28, 28, generator=_seeded(1)) * 2 - 1
    assert torch.equal(operation(x, _seeded(5)), operation(x, _seeded(5)))
    assert not torch.equal(operation(x, _seeded(5)), operation(x, _seeded(6)))


def test_translation_moves_each_image_by_at_most_an_eighth_with_zero_fill() -> None:
    n = 200
    x = torch.rand(n, 1, 28, 28, generator=_seeded(0)) + 1  # no zeros in the input
    out = translation(x, _seeded(1))
    assert out.shape == x.shape
    # Which of the 81 shifts of up to 4 pixels (1/8 of 28) each output is: exactly one.
    matches = torch.stack(
        [
            (out == shift(x, torch.full((n,), dy), torch.full((n,), dx))).flatten(1).all(1)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
        ],
        dim=1,
    )
    assert (matches.sum(1) == 1).all()
    dy, dx = (matches.int().argmax(1) // 9 - 4), (matches.int().argmax(1) % 9 - 4)
    assert set(dy.tolist()) == set(range(-4, 5)) == set(dx.tolist())
    zeros = (out == 0).flatten(1).sum(1)
    assert torch.equal(zeros, 28 * 28 - (28 - dy.abs()) * (28 - dx.abs()))


def test_shift_is_the_content_moved_with_zeros_in_the_gap() -> None:
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    moved = shift(x, torch.tensor([1]), torch.tensor([-2]))[0, 0]
    assert torch.equal(moved[1:, :2], x[0, 0, :3, 2:])
    assert moved[0].abs().sum() == 0 and moved[:, 2:].abs().sum() == 0


def test_cutout_zeroes_one_clipped_square_of_half_the_side() -> None:
    x = torch.full((300, 1, 28, 28), 0.5)
    out = cutout(x, _seeded(0))
    sizes = set()
    for image in out[:, 0]:
        rows, cols = torch.nonzero(image == 0, as_tuple=True)
        assert len(rows) > 0 and set(image.unique().tolist()) <= {0.0, 0.5}
        top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
        # One axis-aligned rectangle, 14 pixels per side unless it crosses the border.
        assert (image[top : bottom + 1, left : right + 1] == 0).all()
        height, width = int(bottom - top + 1), int(right - left + 1)
        assert height <= 14 and width <= 14
        assert height == 14 or top == 0 or bottom == 27
        assert width == 14 or left == 0 or right == 27
        sizes.add((height, width))
    assert (14, 14) in sizes and len(sizes) > 5


def test_colour_operations_act_on_rgb_images_only() -> None:
    grey = torch.rand(16, 1, 28, 28, generator=_seeded(0)) * 2 - 1
    values = set(grey.unique().tolist()) | {0.0}
    assert set(DiffAugment(1)(grey, _seeded(1)).unique().tolist()) <= values  # moved and cut, not recoloured
    rgb = grey.expand(-1, 3, -1, -1).contiguous()
    assert not set(DiffAugment(3)(rgb, _seeded(1)).unique().tolist()) <= values
    assert DiffAugment(1).extra_repr() == "policy=translation,cutout"
    # ADA's colour matrix mixes channels (hue, saturation, luma flip) on RGB images only.
    red = torch.zeros(64, 3, 8, 8)
    red[:, 0] = 1.0
    augment = _ada(3)
    augment.BRIGHTNESS_STD = 0.0  # brightness alone would lift every channel
    assert augment(red, _seeded(2))[:, 1:].abs().amax() > 0.1
    assert "colour=grey" in _ada(1).extra_repr()


def test_ada_integer_translation_and_flips_are_exact_pixel_moves() -> None:
    x = torch.rand(32, 1, 16, 16, generator=_seeded(0))
    augment = _ada(1, xflip=True)
    # Only the blit operations: scale 1, no fractional shift, identity colour.
    for name in ("SCALE_STD", "ANISO_STD", "XFRAC_STD", "BRIGHTNESS_STD", "CONTRAST_STD"):
        setattr(augment, name, 0.0)
    out = augment(x, _seeded(1))
    for image, moved in zip(x, out):
        candidates = [image, image.flip(-1)]
        assert any(
            torch.allclose(moved[:, 2:-2, 2:-2], torch.roll(c, (dy, dx), (1, 2))[:, 2:-2, 2:-2], atol=1e-5)
            for c in candidates
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        )


def test_ada_leaves_images_alone_at_p_zero_and_changes_all_of_them_at_p_one() -> None:
    x = torch.rand(16, 3, 16, 16, generator=_seeded(0)) * 2 - 1
    assert _ada(3, p=0.0)(x, _seeded(1)) is x
    changed = (_ada(3, p=1.0)(x, _seeded(1)) - x).flatten(1).abs().amax(1)
    assert (changed > 1e-3).all()


# ---------------------------------------------------------------------------- ADA's p
def test_ada_p_rises_while_the_discriminator_is_overconfident_on_reals_and_falls_otherwise() -> None:
    augment = AdaptiveAugment(1, target=0.6, interval=2, kimg=1.0)  # 1,000 images from 0 to 1
    confident, unsure = torch.full((50,), 3.0), torch.tensor([1.0] * 30 + [-1.0] * 20)  # r_t = 1 and 0.2
    for _ in range(2):
        augment.observe(confident)
    assert augment.due
    assert augment.adjust() == pytest.approx(0.1)  # 100 images of 1,000
    assert not augment.due
    for _ in range(4):
        augment.observe(confident)
        if augment.due:
            augment.adjust()
    assert augment.p == pytest.approx(0.3)
    for _ in range(4):
        augment.observe(unsure)
        if augment.due:
            augment.adjust()
    assert augment.p == pytest.approx(0.1)
    for _ in range(20):  # clamped at 0 ...
        augment.observe(unsure)
    augment.adjust()
    assert augment.p == 0.0
    augment.kimg = 0.01
    augment.observe(confident)
    assert augment.adjust() == 1.0  # ... and at 1


def test_a_wasserstein_critic_is_judged_around_the_midpoint_of_its_outputs(make_cfg) -> None:
    # WGAN-GP's critic drifts as a whole: real outputs all above 0 say nothing about overfitting.
    real, fake = torch.tensor([5.0, 5.2, 3.0, 3.2]), torch.full((4,), 4.0)
    for model, expected in (("wgan_gp", 0.0), ("dcgan", 4.0)):
        cfg = make_cfg("train", [f"model={model}", *TINY, *BUNDLED_MNIST, "model.augment=ada"])
        gan = build(cfg.model)
        gan._adapt(real, fake)
        assert gan.augmenter.signs.tolist() == [expected, 4], model


# ---------------------------------------------------------------------------- in the GAN
class Spy:
    """Records the augmenter's inputs and outputs and every discriminator call."""

    def __init__(self) -> None:
        self.augmented: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.calls: list[dict] = []
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def was_augmented(self, x: torch.Tensor) -> bool:
        return any(x is out for _, out in self.augmented)

    def install(self, patch: pytest.MonkeyPatch) -> None:
        spy = self
        original_start, original_step = GanModule.on_train_start, GanModule.training_step

        def on_train_start(module: GanModule) -> None:
            original_start(module)
            augment, discriminate = module.augmenter.forward, module.discriminator.forward

            def augmenter(x, generator=None):
                out = augment(x, generator)
                spy.augmented.append((x, out))
                return out

            def discriminator(x, y=None):
                spy.calls.append({"input": x, "labels": y, "training": module.discriminator.training})
                return discriminate(x, y)

            module.augmenter.forward = augmenter
            module.discriminator.forward = discriminator

        def training_step(module: GanModule, batch, batch_idx):
            spy.batches.append(batch)
            return original_step(module, batch, batch_idx)

        patch.setattr(GanModule, "on_train_start", on_train_start)
        patch.setattr(GanModule, "training_step", training_step)


def test_diffaugment_reaches_real_and_fake_in_both_updates_and_never_evaluation(make_cfg) -> None:
    spy = Spy()
    cfg = make_cfg("train", ["model=dcgan", *TINY, *BUNDLED_MNIST, "model.augment=diffaugment", "debug=fdr"])
    with pytest.MonkeyPatch.context() as patch:
        spy.install(patch)
        result = train(cfg)
    assert result.metrics["global_step"] == 1 and math.isfinite(result.metrics["loss/g"])
    training = [call for call in spy.calls if call["training"]]
    evaluation = [call for call in spy.calls if not call["training"]]
    # One step: the discriminator scores the real and a fake batch, then the generator's fakes.
    assert len(training) == 3 and all(spy.was_augmented(call["input"]) for call in training)
    assert len(evaluation) == 4 and not any(spy.was_augmented(call["input"]) for call in evaluation)
    ((real, _),) = spy.batches
    inputs = [x for x, _ in spy.augmented]
    assert inputs[0] is real  # the real batch itself
    assert not inputs[1].requires_grad and inputs[2].requires_grad  # D's fakes, then G's (with a graph)


def test_the_gradient_penalty_is_taken_on_the_augmented_batches(make_cfg) -> None:
    spy, penalised = Spy(), []
    original = GradientPenalty.__call__

    def recording(self, critic, real, fake, generator):
        penalised.append((real, fake))
        return original(self, critic, real, fake, generator)

    cfg = make_cfg(
        "train",
        ["model=wgan_gp", *TINY, *BUNDLED_MNIST, "model.augment=diffaugment", "debug=fdr", "test=false"],
    )
    with pytest.MonkeyPatch.context() as patch:
        spy.install(patch)
        patch.setattr(GradientPenalty, "__call__", recording)
        result = train(cfg)
    assert math.isfinite(result.metrics["loss/gp"])
    ((real, fake),) = penalised
    assert spy.was_augmented(real) and spy.was_augmented(fake)


def test_cgan_with_ada_keeps_labels_logs_p_and_checkpoints_it(make_cfg) -> None:
    spy, seen = Spy(), {}
    original_end = GanModule.on_train_end

    def start_at_half(module: GanModule) -> None:
        module.augmenter.p = 0.5  # mid-range, so that every adjustment shows

    def on_train_end(module: GanModule) -> None:
        seen["p"] = module.augmenter.p
        original_end(module)

    overrides = ["model=cgan", *TINY, *BUNDLED_MNIST, "model.augment=ada"]
    overrides += ["model.ada_interval=1", "model.ada_kimg=1", "test=false"]
    cfg = make_cfg("train", overrides)
    with pytest.MonkeyPatch.context() as patch:
        spy.install(patch)
        installed = GanModule.on_train_start
        patch.setattr(GanModule, "on_train_start", lambda m: (installed(m), start_at_half(m)))
        patch.setattr(GanModule, "on_train_end", on_train_end)
        result = train(cfg)
    # Three updates of 16 real images each, p moved by 16 / 1,000 per update.
    assert seen["p"] != 0.5 and abs(seen["p"] - 0.5) <= 3 * 0.016 + 1e-9
    assert result.metrics["train/ada_p"] == pytest.approx(seen["p"])
    # Real images keep their labels through the augmentation.
    for (_, labels), call in zip(spy.batches, [c for c in spy.calls if c["training"]][::3]):
        assert spy.was_augmented(call["input"]) and call["labels"] is labels
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["state_dict"]["augmenter._extra_state"] == {"p": seen["p"]}
    model = GenerativeModule.from_checkpoint(last)
    assert model.augmenter.p == seen["p"]
    # Sampling is not augmented: the generator's output as it is.
    generator = _seeded(0)
    labels = model.sample_labels(4, generator)
    expected = model.to_unit(model.sampling_generator(model.sample_latents(4, generator), labels))
    assert torch.equal(model.sample(4, generator=_seeded(0)), expected)


def test_diffaugment_trains_under_privacy(make_cfg) -> None:
    overrides = ["model=cgan", *TINY, *BUNDLED_MNIST, "model.spectral_norm=false", "model.ema=false"]
    overrides += ["privacy=dp", "model.augment=diffaugment", "test=false", "trainer.limit_val_batches=0"]
    result = train(make_cfg("train", overrides))
    assert result.metrics["global_step"] == 3 and 0 < result.metrics["privacy/epsilon"] <= 10


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["model=dcgan", "data=ring8", "model.augment=diffaugment"], ["model.augment=none", "points"]),
        (["model=gan_mlp", "data=grid25", "model.augment=ada"], ["model.augment=none"]),
        (
            [
                "model=cgan",
                *BUNDLED_MNIST,
                "model.spectral_norm=false",
                "privacy=dp",
                "model.augment=ada",
            ],
            ["privacy=dp", "model.augment=diffaugment"],
        ),
        (["model=dcgan", *BUNDLED_MNIST, "model.augment=cutmix"], ["model.augment"]),
    ],
)
def test_augmentation_that_cannot_apply_stops_before_training(make_cfg, overrides, fragments) -> None:
    cfg = make_cfg("train", [*TINY, *overrides])
    with pytest.raises(UserError) as error:
        train(cfg)
    for fragment in fragments:
        assert fragment in str(error.value)
    assert not list(Path(cfg.paths.output_dir).rglob("*.ckpt"))


def test_an_mlp_gan_on_images_is_augmented_like_a_convolutional_one(make_cfg) -> None:
    overrides = ["model=gan_mlp", *TINY, "model.mlp_width=16", "model.mlp_depth=2", *BUNDLED_MNIST]
    gan = build(make_cfg("train", [*overrides, "model.augment=diffaugment"]).model)
    assert isinstance(gan.augmenter, DiffAugment)
    x = (torch.rand(4, 1, 28, 28) * 2 - 1).requires_grad_(True)
    gan.discriminator(gan.augmenter(x, _seeded(0))).sum().backward()
    assert (x.grad.flatten(1).abs().sum(1) > 0).all()


def test_gan_mlp_as_typed_is_diffaugmented_on_images_and_not_on_points(make_cfg) -> None:
    """``model=gan_mlp`` defaults to ``augment=auto``: the study's better setting (DiffAugment) on
    images; on 2-D points, where no augmentation applies, none (an explicit setting still stops)."""
    tiny = ["model.mlp_width=16", "model.mlp_depth=2"]
    on_images = build(make_cfg("train", ["model=gan_mlp", *tiny, *BUNDLED_MNIST]).model)
    assert isinstance(on_images.augmenter, DiffAugment)
    on_points = build(make_cfg("train", ["model=gan_mlp", *tiny, "data=ring8"]).model)
    assert on_points.augmenter is None
    dcgan = build(make_cfg("train", ["model=dcgan", *BUNDLED_MNIST]).model)
    assert dcgan.augmenter is None
