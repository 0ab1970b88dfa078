"""Restoring missing pixels: masks, observed pixels untouched, fills better than the baselines, CLI."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from src.export.verify import verify_dataset
from src.inpaint import main as inpaint_main
from src.inpaint import summary_lines
from src.inpainting.masks import make_masks, mask_settings
from src.inpainting.pipeline import preview_rows, write_preview
from src.inpainting.scores import (
    mean_fill,
    missing_pixel_errors,
    nearest_neighbour_fill,
    posterior_mean,
    recovered_fraction,
)
from src.models.gan import GanModule
from src.models.losses import NonSaturatingLoss
from src.models.vae import VaeModule
from src.runtime.build import load_trained_run
from tests.test_errors import assert_one_error_line, run_main


def _digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from src.data.mnist import _bundled_mnist

    x, y = _bundled_mnist()
    return x[:n].clone(), y[:n].clone()


@pytest.mark.parametrize("kind", ["center", "blocks", "pixels", "half"])
def test_masks_are_seeded_and_of_their_kind(kind: str) -> None:
    a = make_masks(kind, 6, 28, seed=3)
    assert a.dtype == torch.bool and a.shape == (6, 1, 28, 28)
    assert torch.equal(a, make_masks(kind, 6, 28, seed=3))
    if kind == "center":
        assert int(a[0].sum()) == 14 * 14 and bool(a[0, 0, 14, 14]) and not bool(a[0, 0, 0, 0])
    elif kind == "half":
        assert a[:, :, :, :14].all() and not a[:, :, :, 14:].any()
    elif kind == "pixels":
        assert abs(float(a.float().mean()) - 0.5) < 0.05
        assert not torch.equal(a, make_masks(kind, 6, 28, seed=4))
    else:
        assert not torch.equal(a[0], a[1])  # blocks land at random places per image


def test_psnr_matches_torchmetrics_on_fully_missing_images() -> None:
    x, _ = _digits(4)
    noisy = (
        (x.float() + torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * 20)
        .clamp(0, 255)
        .round()
    )
    noisy = noisy.to(torch.uint8)
    mask = torch.ones(4, 1, 28, 28, dtype=torch.bool)
    ours = missing_pixel_errors(noisy, x, mask)["psnr"]
    reference = torch.stack(
        [
            peak_signal_noise_ratio(noisy[i].float() / 255, x[i].float() / 255, data_range=1.0)
            for i in range(4)
        ]
    ).mean()
    assert ours == pytest.approx(float(reference), rel=1e-5)


def test_baselines() -> None:
    train, _ = _digits(50)
    mask = make_masks("center", 5, 28)
    # A training image's nearest neighbour on its observed pixels is itself: a perfect fill.
    assert torch.equal(nearest_neighbour_fill(train[:5], mask, train), train[:5])
    filled = mean_fill(train[:5], mask, train)
    mean = train.float().mean(0).round().to(torch.uint8)
    assert torch.equal(filled[:, :, 14, 14], mean[:, 14, 14].expand(5, 1))
    assert recovered_fraction(0.9, 0.5, 0.8) == pytest.approx(0.75)
    assert recovered_fraction(0.9, 0.9, 0.8) is None


def test_posterior_mean_of_draws_beats_a_single_draw() -> None:
    # A sampler whose draws scatter around the truth: each draw pays the spread, their mean much less.
    x, _ = _digits(6)
    mask = make_masks("center", 6, 28)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn((8, *x.shape), generator=generator) * 60
    draws = (x.float() + noise).round().clamp(0, 255).to(torch.uint8)
    draws = torch.where(mask.expand_as(x), draws, x)  # a fill keeps the observed pixels
    point = posterior_mean(draws, x, mask)
    observed = ~mask.expand_as(x)
    assert torch.equal(point[observed], x[observed])
    mean_mse = missing_pixel_errors(point, x, mask)["mse"]
    single_mse = missing_pixel_errors(draws[0], x, mask)["mse"]
    assert mean_mse <= single_mse / 2, (mean_mse, single_mse)
    # One draw is its own mean.
    assert torch.equal(posterior_mean(draws[:1], x, mask), draws[0])


def test_preview_rows_are_labelled(tmp_path) -> None:
    from PIL import Image

    x, _ = _digits(10)
    mask = make_masks("center", 10, 28)
    versions = {name: x for name in ("model", "model_single_draw", "mean_fill", "nearest_neighbour_fill")}
    labels = write_preview(tmp_path / "p.png", x, mask, versions, k=8)
    assert labels == list(preview_rows(8).values()) and len(labels) == 6
    assert labels[:3] == ["original", "masked", "model: mean of 8 draws"]
    picture = np.asarray(Image.open(tmp_path / "p.png").convert("L"))
    # 8 images of 28 px with 2 px padding, scaled by 2; the rest is the margin with the labels.
    scale, row = 2, 30
    margin = picture.shape[1] - (8 * row + 2) * scale
    assert picture.shape[0] == (6 * row + 2) * scale and margin > 40
    for i in range(6):  # text (dark pixels) beside every row, on a white margin
        band = picture[(2 + i * row) * scale : (2 + i * row + 28) * scale, :margin]
        assert band.min() < 100 and np.median(band) == 255


def test_recorded_settings_resolve_defaults() -> None:
    assert mask_settings("center", 28) == {"size": 14}
    assert mask_settings("blocks", 28, blocks=3) == {"size": 7, "blocks": 3}
    assert mask_settings("pixels", 28, fraction=0.3) == {"fraction": 0.3}
    assert mask_settings("half", 28, side="top") == {"side": "top"}
    assert _tiny_vae().inpaint_settings() == {"steps": 200}
    assert _tiny_gan().inpaint_settings(steps=10, restarts=2) == {
        "steps": 10,
        "restarts": 2,
        "lr": 0.05,
        "prior_weight": 0.003,
    }


def test_console_summary_shows_mean_single_draw_and_baselines() -> None:
    row = {"mse": 0.01, "psnr": 20.0}
    scores = {name: row for name in ("model", "model_single_draw", "mean_fill", "nearest_neighbour_fill")}
    scores["classifier_accuracy"] = {"original": 0.9, "masked": 0.5, "model": 0.8, "model_recovered": 0.75}
    lines = summary_lines(scores, 20, k=8)
    assert "mean of 8 draws" in lines[0]
    assert [line.split()[0] for line in lines[2:6]] == [
        "model",
        "model_single_draw",
        "mean_fill",
        "nearest_neighbour_fill",
    ]
    assert "recovers 75%" in lines[-1]


def _tiny_vae(conditional: bool = False) -> VaeModule:
    return VaeModule(
        image_size=28,
        channels=1,
        num_classes=10,
        conditional=conditional,
        latent_dim=4,
        width=8,
        iwae_samples=2,
        optimizer=functools.partial(torch.optim.Adam, lr=3e-3),
    )


def _tiny_gan(conditional: bool = False) -> GanModule:
    return GanModule(
        image_size=28,
        channels=1,
        num_classes=10,
        conditional=conditional,
        latent_dim=8,
        g_width=8,
        d_width=8,
        loss=NonSaturatingLoss(),
        optimizer_g=functools.partial(torch.optim.Adam),
        optimizer_d=functools.partial(torch.optim.Adam),
    )


@pytest.mark.parametrize(
    ("build", "conditional", "method"),
    [
        (_tiny_vae, False, "mwg"),
        (_tiny_vae, True, "pseudo_gibbs"),
        (_tiny_gan, False, "latent"),
        (_tiny_gan, True, "latent"),
    ],
)
def test_observed_pixels_are_bit_identical(build, conditional: bool, method: str) -> None:
    torch.manual_seed(0)
    model = build(conditional)
    x, y = _digits(6)
    mask = make_masks("pixels", 6, 28, seed=1)
    filled = model.inpaint(
        x, mask, labels=y, method=method, steps=3, generator=torch.Generator().manual_seed(0)
    )
    assert filled.dtype == torch.uint8 and filled.shape == x.shape
    assert torch.equal(filled[~mask.expand_as(x)], x[~mask.expand_as(x)])
    assert not torch.equal(filled, x)  # the missing pixels were filled (a digit is not all zeros there)


def test_vae_overfit_to_a_few_images_inpaints_better_than_mean_fill() -> None:
    torch.manual_seed(0)
    model = _tiny_vae()
    x, _ = _digits(8)
    inputs = model.to_model_range(x)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(400):
        log_px, kl = model.elbo_terms(inputs, None, None)
        loss = (-log_px + kl).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    mask = make_masks("center", 8, 28)
    filled = model.inpaint(x, mask, steps=60, generator=torch.Generator().manual_seed(0))
    ours = missing_pixel_errors(filled, x, mask)["mse"]
    baseline = missing_pixel_errors(mean_fill(x, mask, x), x, mask)["mse"]
    noise = torch.randint(0, 256, x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert missing_pixel_errors(torch.where(mask, noise, x), x, mask)["mse"] > baseline
    assert ours < 0.7 * baseline, (ours, baseline)


def test_inpaint_command_exports_filled_images_masks_and_scores(
    trained_checkpoints, tmp_path, capsys, data_root
) -> None:
    out = tmp_path / "filled"
    args = [
        f"ckpt_path={trained_checkpoints['cvae']}",
        "mask=blocks",
        "split=test",
        f"out_dir={out}",
        "n=20",
        "steps=4",
    ]
    code, err = run_main(inpaint_main, args, tmp_path, capsys, data_root)
    assert code == 0, err
    assert verify_dataset(out) == []
    manifest = json.loads((out / "manifest.json").read_text())
    block = manifest["inpainting"]
    assert block["mask"] == "blocks" and block["method"] == "mwg" and block["split"] == "test"
    assert manifest["sources"]["inpainted"]["n"] == 20 == manifest["n"]
    assert set(block["scores"]) == {
        "model",
        "model_single_draw",
        "mean_fill",
        "nearest_neighbour_fill",
        "classifier_accuracy",
    }
    accuracy = block["scores"]["classifier_accuracy"]
    assert {"original", "masked", "model", "model_single_draw", "mean_fill"} <= set(accuracy)
    # The values used, defaults resolved: k, the chain length, the blocks' side (a quarter of 28).
    assert block["k"] == 8 and block["method_options"] == {"steps": 4}
    assert block["mask_options"] == {"size": 7, "blocks": 4}
    assert block["preview_rows"][2:4] == ["model: mean of 8 draws", "model: one draw"]
    (metrics_file,) = (tmp_path / "logs").rglob("metrics.json")
    protocol = json.loads(metrics_file.read_text())["protocol"]["inpainting"]
    assert protocol["method_options"] == {"steps": 4} and protocol["mask_options"]["size"] == 7
    saved = np.load(out / "masks.npz")
    assert np.array_equal(saved["masks"], make_masks("blocks", 20, 28, seed=0)[:, 0].numpy())
    # The export's images keep every observed pixel of the test split.
    arrays = np.load(out / "data.npz")
    from tests.conftest import compose_config

    cfg = compose_config(
        "inpaint", [f"ckpt_path={trained_checkpoints['cvae']}", f"out_dir={out}", "hardware=cpu"]
    )
    x_test = load_trained_run(cfg, trained_checkpoints["cvae"]).datamodule.split("test")[0][:20]
    observed = ~saved["masks"]
    assert np.array_equal(arrays["images"][..., 0][observed], x_test[:, 0].numpy()[observed])
    assert (tmp_path / "filled.preview.png").is_file()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["mask=star"], ["mask"]),
        (["method=latent"], ["method=latent", "mwg"]),
        (["restarts=3"], ["restarts", "VAE"]),
        (["mask_size=40"], ["mask_size=40", "28x28"]),
        (["split=holdout"], ["split"]),
        (["mask=pixels", "mask_fraction=1.5"], ["mask_fraction"]),
    ],
)
def test_inpaint_errors(args, fragments, trained_checkpoints, tmp_path, capsys, data_root) -> None:
    out = tmp_path / "x"
    argv = [f"ckpt_path={trained_checkpoints['vae']}", f"out_dir={out}", "n=4", "steps=2", *args]
    code, err = run_main(inpaint_main, argv, tmp_path, capsys, data_root)
    assert code == 2
    assert_one_error_line(code, err, *fragments)
    assert not out.exists()
