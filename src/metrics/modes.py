"""Mode coverage of toy 2-D mixtures (the PacGAN protocol, Lin et al. 2018).

A sample is *high quality* when it lies within ``hq_sigmas`` standard deviations of its nearest
mode; a mode is *captured* when at least one high-quality sample is nearest to it. The reverse
KL compares the histogram of high-quality samples over modes with the uniform distribution of
the data: ``sum_m p_m log(p_m * M)`` (0 when every mode gets the same share, ``log M`` when all
samples sit in one mode; also ``log M`` when no sample is high quality).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

PROTOCOL = "pacgan-modes"
# PacGAN: a sample is high quality within 3 standard deviations of its nearest mode.
HQ_SIGMAS = 3.0


def mode_statistics(
    samples: Tensor, modes: Tensor, sigma: float, hq_sigmas: float = HQ_SIGMAS
) -> dict[str, float]:
    """Returns ``{"modes": captured modes, "hq_frac": high-quality fraction, "rkl": reverse KL}``."""
    samples = samples.detach().double().cpu()
    modes = modes.detach().double().cpu()
    distance, nearest = torch.cdist(samples, modes).min(dim=1)
    high_quality = distance <= hq_sigmas * sigma
    counts = torch.bincount(nearest[high_quality], minlength=len(modes)).double()
    total = float(counts.sum())
    if total == 0:
        rkl = math.log(len(modes))
    else:
        p = counts[counts > 0] / total
        rkl = float((p * torch.log(p * len(modes))).sum())
    return {
        "modes": float((counts > 0).sum()),
        "hq_frac": float(high_quality.double().mean()),
        "rkl": rkl,
    }
