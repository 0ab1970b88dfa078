"""The table of scores: every number a run logs, which way is better, its range, what it measures.

One table serves everything that needs a direction: the checkpoint monitor's mode
(``model.monitor_mode``), early stopping, the Optuna direction of ``hparams_search`` configs (the
``score.direction`` resolver) and the arrows in study and report tables. A score is looked up by
its logged name (``val/fid``, ``test/nll_iwae``, ``loss/d``, ``spread/val/fid``); the stage prefix
(``train/``, ``val/``, ``test/``, ``scores/``, ``utility/``) does not change what it measures.

``higher_is_better=None`` marks diagnostics (adversarial losses, critic outputs, spreads of KID/IS
subsets): they are logged, but no selection or search may optimise them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from src.utils.errors import UserError

INF = math.inf
STAGES = ("train", "val", "test", "scores", "utility")


@dataclass(frozen=True)
class Score:
    """One row of the table. ``name`` is the logged name without stage prefix; ``<res>`` in it
    stands for an image size (per-level pixel SWD)."""

    name: str
    higher_is_better: bool | None
    low: float
    high: float
    measures: str

    @property
    def mode(self) -> Literal["min", "max"] | None:
        """Lightning's ``mode`` (``ModelCheckpoint``, ``EarlyStopping``)."""
        if self.higher_is_better is None:
            return None
        return "max" if self.higher_is_better else "min"

    @property
    def direction(self) -> Literal["minimize", "maximize"] | None:
        """Optuna's ``direction``."""
        if self.higher_is_better is None:
            return None
        return "maximize" if self.higher_is_better else "minimize"

    @property
    def arrow(self) -> str:
        return {True: "↑", False: "↓", None: ""}[self.higher_is_better]

    def range_text(self) -> str:
        def bound(value: float) -> str:
            if math.isinf(value):
                return "∞" if value > 0 else "-∞"
            return f"{value:g}"

        left = "(" if math.isinf(self.low) else "["
        right = ")" if math.isinf(self.high) else "]"
        return f"{left}{bound(self.low)}, {bound(self.high)}{right}"


SCORES: tuple[Score, ...] = (
    # Sample quality in a feature space (metrics callback, images).
    Score("fid", False, 0, INF, "Fréchet distance between Gaussian fits of real and generated features"),
    Score(
        "kid",
        False,
        -INF,
        INF,
        "kernel (cubic polynomial) MMD² of features, unbiased: 0 = same distribution, can dip below 0",
    ),
    Score("kid_std", None, 0, INF, "spread of KID over its random subsets"),
    Score(
        "is", True, 1, INF, "Inception Score on the extractor's class logits (at most the number of classes)"
    ),
    Score("is_std", None, 0, INF, "spread of IS over its splits"),
    Score(
        "precision", True, 0, 1, "share of samples inside the real feature manifold (k-NN balls): fidelity"
    ),
    Score("recall", True, 0, 1, "share of real images inside the generated manifold: diversity"),
    Score(
        "density", True, 0, INF, "real k-NN balls containing a sample, per sample / k (1 = as dense as real)"
    ),
    Score("coverage", True, 0, 1, "share of real images whose k-NN ball holds a sample: diversity"),
    Score(
        "p_precision",
        True,
        0,
        1,
        "probabilistic precision (Park & Kim 2023): fidelity that outliers cannot inflate",
    ),
    Score(
        "p_recall",
        True,
        0,
        1,
        "probabilistic recall (Park & Kim 2023): diversity that outliers cannot inflate",
    ),
    Score(
        "precision_outlier_share",
        None,
        0,
        1,
        "share of precision's samples inside only the 1 % largest real k-NN balls (> 0.5 warns)",
    ),
    Score(
        "authenticity",
        True,
        0,
        1,
        "share of samples not closer to a training image than training images are to each other",
    ),
    Score("nn_train", None, 0, INF, "mean distance of samples to their nearest training image"),
    Score(
        "nn_heldout", None, 0, INF, "mean distance of samples to their nearest held-out image (scored split)"
    ),
    Score(
        "copy_share",
        False,
        0,
        1,
        "share of samples closer to a training image than a third of its nearest-neighbour distance (near-copies)",
    ),
    Score(
        "outside_share",
        False,
        0,
        1,
        "share of samples farther from every real image than 99 % of real images from their nearest other one",
    ),
    Score(
        "sharpness",
        None,
        0,
        INF,
        "mean variance of the image Laplacian (focus measure); judged against real images' (blur)",
    ),
    Score(
        "class_tv",
        False,
        0,
        1,
        "total variation between the domain classifier's class histogram of the samples and the real labels'",
    ),
    Score("mifid", False, 0, INF, "memorization-informed FID (FID penalised for copies of training images)"),
    Score(
        "confident_frac",
        True,
        0,
        1,
        "share of samples the domain classifier assigns to one class with p >= threshold",
    ),
    Score("swd", False, 0, INF, "sliced Wasserstein-2 distance between real and generated features"),
    Score(
        "swd_pixel",
        False,
        0,
        INF,
        "multi-scale pixel SWD (Karras et al. 2018) x 1e3, mean over pyramid levels",
    ),
    Score("swd_pixel_<res>", False, 0, INF, "pixel SWD x 1e3 of the Laplacian-pyramid level of that size"),
    Score(
        "detection_auc",
        False,
        0,
        1,
        "held-out ROC AUC of a classifier telling real from generated features, or table rows "
        "(cross-validated, encoded rows) (0.5 = cannot tell)",
    ),
    # Tables (metrics=table, src/metrics/tabular.py; SDMetrics quality-report definitions).
    Score("quality", True, 0, 1, "mean of column_shapes and column_pair_trends (SDMetrics quality report)"),
    Score(
        "column_shapes",
        True,
        0,
        1,
        "mean over columns of 1 - KS statistic (continuous) or 1 - total variation of category frequencies (discrete)",
    ),
    Score(
        "column_pair_trends",
        True,
        0,
        1,
        "mean over column pairs of 1 - |Δ Pearson r| / 2 (continuous pairs) or 1 - total variation of the "
        "2-D frequency table (other pairs, continuous in 10 bins)",
    ),
    Score(
        "dcr",
        None,
        0,
        1,
        "median Gower distance of rows to their closest training row; judged beside real held-out rows' "
        "(far lower = near-copies, far higher = implausible rows), so no direction",
    ),
    Score(
        "dcr_closer_share",
        False,
        0,
        1,
        "share of rows closer to a training row than to any held-out row (equal-size sets, ties half): "
        "0.5 = no memorisation, 1 = copies; lower is better down to 0.5, below is no gain",
    ),
    Score("exact_copy_share", False, 0, 1, "share of rows identical to a training row after decoding"),
    Score("distinct_share", True, 0, 1, "distinct rows / rows (collapse repeats rows)"),
    Score(
        "category_coverage",
        True,
        0,
        1,
        "share of the categories the real rows use (all discrete columns) that the rows use too",
    ),
    Score(
        "target_tv", False, 0, 1, "total variation between the target's class frequencies and the real ones"
    ),
    Score(
        "tstr_accuracy", True, 0, 1, "real-test accuracy of a classifier of the target trained on the rows"
    ),
    Score("tstr_f1", True, 0, 1, "real-test macro F1 of a classifier of the target trained on the rows"),
    Score(
        "tstr_roc_auc",
        True,
        0,
        1,
        "real-test ROC AUC (one-vs-rest, macro) of a classifier of the target trained on the rows",
    ),
    Score("trtr_accuracy", True, 0, 1, "the same classifier trained on as many real training rows: accuracy"),
    Score("trtr_f1", True, 0, 1, "the same classifier trained on as many real training rows: macro F1"),
    Score("trtr_roc_auc", True, 0, 1, "the same classifier trained on as many real training rows: ROC AUC"),
    # Toy 2-D mixtures (PacGAN protocol, and exact transport).
    Score("modes", True, 0, INF, "modes with at least one high-quality sample (of 8 or 25)"),
    Score("hq_frac", True, 0, 1, "share of samples within 3 sigma of a mode"),
    Score(
        "rkl",
        False,
        0,
        INF,
        "reverse KL of the high-quality mode histogram against uniform (at most log #modes)",
    ),
    Score("w1", False, 0, INF, "exact Wasserstein-1 distance between generated and real points (POT)"),
    Score("w2", False, 0, INF, "exact Wasserstein-2 distance between generated and real points (POT)"),
    # GAN evaluation steps.
    Score("d_real", None, -INF, INF, "mean critic output on held-out real images"),
    Score("d_fake", None, -INF, INF, "mean critic output on generated samples"),
    Score(
        "d_margin",
        None,
        -INF,
        INF,
        "mean critic output on held-out real images minus that on generated samples",
    ),
    Score(
        "d_acc",
        False,
        0,
        1,
        "share of (held-out real, generated) pairs where the discriminator scores the real one higher (ROC AUC; 0.5 = cannot tell)",
    ),
    # VAE, in nats per image.
    Score("elbo", True, -INF, INF, "evidence lower bound on log p(x)"),
    Score("loss", False, -INF, INF, "the training objective (VAE: recon + beta * kl)"),
    Score("recon", False, -INF, INF, "reconstruction term -E_q[log p(x|z)]"),
    Score("kl", None, 0, INF, "KL(q(z|x) || p(z)), the rate"),
    Score("nll_iwae", False, -INF, INF, "negative log-likelihood from the importance-weighted bound"),
    Score("beta", None, 0, INF, "the KL weight in effect (warm-up included)"),
    # Adversarial training losses: they measure the game, not progress.
    Score("loss/d", None, -INF, INF, "the discriminator's objective, penalties included"),
    Score("loss/g", None, -INF, INF, "the generator's objective"),
    Score("loss/gp", None, 0, INF, "gradient penalty term"),
    Score("loss/r1", None, 0, INF, "R1 penalty term"),
    # Synthetic dataset utility (src.evaluate_dataset).
    Score(
        "accuracy_synthetic",
        True,
        0,
        1,
        "real-test accuracy of a classifier trained on synthetic images (CAS)",
    ),
    Score(
        "accuracy_real",
        True,
        0,
        1,
        "real-test accuracy of the same classifier trained on as many real images",
    ),
    Score(
        "accuracy_real_synthetic",
        True,
        0,
        1,
        "real-test accuracy of the classifier trained on real + synthetic images",
    ),
    Score("cas_ratio", True, 0, INF, "CAS / real accuracy"),
    Score("augmentation_gain", True, -1, 1, "accuracy gain from adding the synthetic images to real ones"),
    # Stability (metrics.json).
    Score(
        "spread/<score>", False, 0, INF, "standard deviation of the score over the run's last k evaluations"
    ),
    Score("divergence_events", False, 0, INF, "times the divergence guard found a NaN or infinite loss"),
)

_BY_NAME = {s.name: s for s in SCORES}
_PIXEL_LEVEL = re.compile(r"swd_pixel_\d+$")


def lookup(name: str) -> Score | None:
    """The row of a logged name (``val/fid`` -> ``fid``), or ``None`` for names outside the table."""
    if name.startswith("spread/"):
        return _BY_NAME.get("spread/<score>") if lookup(name[len("spread/") :]) else None
    base = name
    while "/" in base and base.split("/", 1)[0] in STAGES:
        base = base.split("/", 1)[1]
    if _PIXEL_LEVEL.match(base):
        return _BY_NAME["swd_pixel_<res>"]
    return _BY_NAME.get(base)


def score(name: str, purpose: str) -> Score:
    """The row of ``name``, which ``purpose`` (e.g. ``model.monitor``) wants to optimise.

    Raises :class:`UserError` for names outside the table and for diagnostics without a direction.
    """
    row = lookup(name)
    if row is None:
        raise UserError(
            f"{purpose}={name} is not in the table of scores (src/metrics/registry.py, listed in the README): "
            "use a logged score such as val/fid, val/elbo or val/rkl."
        )
    if row.higher_is_better is None:
        raise UserError(
            f"{purpose}={name} has no better direction ({row.measures}): choose a score with one, e.g. "
            "val/fid, val/elbo or val/rkl."
        )
    return row


def mode(name: str, purpose: str = "model.monitor") -> Literal["min", "max"]:
    """``min`` or ``max`` for ``name``, from the table."""
    result = score(name, purpose).mode
    assert result is not None
    return result


def direction(name: str, purpose: str = "optimized_metric") -> Literal["minimize", "maximize"]:
    """Optuna's ``minimize`` or ``maximize`` for ``name``, from the table."""
    result = score(name, purpose).direction
    assert result is not None
    return result


def check_mode(name: str, given: str | None, purpose: str, mode_key: str) -> Literal["min", "max"]:
    """The table's mode for ``name``; a ``given`` mode that contradicts it is a :class:`UserError`."""
    derived = mode(name, purpose)
    if given is not None and given != derived:
        row = score(name, purpose)
        better = "higher" if row.higher_is_better else "lower"
        raise UserError(
            f"{mode_key}={given} contradicts {purpose}={name}: {better} is better for it ({row.measures}). "
            f"Remove {mode_key} (it follows the table) or set {mode_key}={derived}."
        )
    return derived


def arrow(name: str) -> str:
    """``↑`` / ``↓`` for scores with a direction, ``""`` otherwise."""
    row = lookup(name)
    return row.arrow if row else ""


def with_arrow(name: str) -> str:
    """``val/fid ↓``: a table header that says which way is better."""
    mark = arrow(name)
    return f"{name} {mark}" if mark else name


def markdown_table() -> str:
    """The table as markdown (the README's "Scores" section is this text)."""
    lines = ["| score | better | range | measures |", "|---|---|---|---|"]
    for row in SCORES:
        better = {True: "higher ↑", False: "lower ↓", None: "(diagnostic)"}[row.higher_is_better]
        lines.append(f"| `{row.name}` | {better} | {row.range_text()} | {row.measures} |")
    return "\n".join(lines) + "\n"
