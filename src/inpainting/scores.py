"""How well missing pixels were restored, and the two baselines every method is compared with.

* MSE and PSNR on the missing pixels only, per image in ``[0, 1]`` units, then averaged
  (``PSNR = 10 log10(1 / MSE)``, peak 1), of a sampler's point estimate (:func:`posterior_mean`)
  and of one draw; SSIM (torchmetrics, Gaussian 11x11 window) on whole
  images, which counts the untouched observed pixels too;
* baselines: mean-image fill (the pixel-wise mean of the training split) and nearest-neighbour
  fill (the missing pixels of the training image closest on the observed pixels);
* the domain classifier's accuracy on the original, the masked (missing pixels set to 0) and the
  filled images.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

SSIM_MIN_SIZE = 11  # torchmetrics' default Gaussian window


def missing_pixel_errors(filled: Tensor, original: Tensor, mask: Tensor) -> dict[str, float]:
    """Mean MSE and PSNR over images, on the missing pixels; SSIM on whole images where it fits."""
    a, b = filled.float() / 255.0, original.float() / 255.0
    missing = mask.expand_as(a).float()
    counts = missing.sum((1, 2, 3))
    keep = counts > 0
    mse = (((a - b) ** 2) * missing).sum((1, 2, 3))[keep] / counts[keep]
    psnr = 10 * torch.log10(1.0 / mse.clamp_min(1e-10))
    scores = {"mse": float(mse.mean()), "psnr": float(psnr.mean())}
    if min(a.shape[-2:]) >= SSIM_MIN_SIZE:
        scores["ssim"] = float(structural_similarity_index_measure(a, b, data_range=1.0))
    return {k: v if math.isfinite(v) else float("nan") for k, v in scores.items()}


def posterior_mean(draws: Tensor, images: Tensor, mask: Tensor) -> Tensor:
    """The point estimate of ``K`` uint8 fills ``(K, N, C, H, W)``: their pixel-wise mean (rounded)
    on the missing pixels, ``images`` elsewhere (copied, so observed pixels stay bit-identical).

    The mean of a sampler's draws estimates the posterior mean, which minimises the expected
    squared error; one draw adds the posterior's spread to it.
    """
    mean = draws.float().mean(0).round().to(torch.uint8)
    return torch.where(mask.expand_as(images), mean, images)


def mean_fill(images: Tensor, mask: Tensor, train: Tensor) -> Tensor:
    """Missing pixels <- the training split's mean image (rounded to uint8)."""
    mean = train.float().mean(0, keepdim=True).round().to(torch.uint8)
    return torch.where(mask.expand_as(images), mean.expand_as(images), images)


def nearest_neighbour_fill(images: Tensor, mask: Tensor, train: Tensor, chunk: int = 256) -> Tensor:
    """Missing pixels <- those of the training image nearest in squared distance on the observed pixels.

    ``|o * (x - t)|^2 = sum o x^2 - 2 (o x) . t + o . t^2`` per pair: three matrix products, no
    (N_test x N_train x pixels) tensor.
    """
    full = mask.expand_as(images)
    t = train.float().flatten(1) / 255.0
    t2 = t**2
    out = []
    for xb, mb in zip(images.split(chunk), full.split(chunk)):
        x = xb.float().flatten(1) / 255.0
        o = (~mb).float().flatten(1)
        distance = (o * x**2).sum(1, keepdim=True) - 2 * (o * x) @ t.T + o @ t2.T
        nearest = train[distance.argmin(1)]
        out.append(torch.where(mb, nearest, xb))
    return torch.cat(out) if out else images


def masked(images: Tensor, mask: Tensor) -> Tensor:
    """The images with their missing pixels set to 0 (what a classifier sees without filling)."""
    return torch.where(mask.expand_as(images), torch.zeros_like(images), images)


def classifier_accuracies(
    classify: Callable[[Tensor], Tensor], labels: Tensor, versions: dict[str, Tensor]
) -> dict[str, float]:
    """Top-1 accuracy of ``classify`` (uint8 images -> logits) on each version of the images."""
    return {
        name: float((classify(x).argmax(1).cpu() == labels.cpu()).float().mean())
        for name, x in versions.items()
    }


def recovered_fraction(original: float, masked_acc: float, filled: float) -> float | None:
    """Share of the accuracy lost to the mask that filling wins back (None when nothing was lost)."""
    lost = original - masked_acc
    return (filled - masked_acc) / lost if lost > 0 else None
