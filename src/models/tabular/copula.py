"""The Gaussian copula: the baseline every tabular paper reports (as SDV's GaussianCopula does it).

Each column gets a marginal distribution, and the dependence between columns is a multivariate
normal on their *normal scores*:

* a **continuous** column: its empirical distribution, kept as ``quantiles`` (at most 1,000
  evenly spaced quantiles of the training values; sampling interpolates linearly between them, so
  values fall between observed ones rather than on them). A missing value is the bottom
  ``p_missing`` of ``[0, 1]``;
* a **discrete** column: its categories' training frequencies, as consecutive intervals of
  ``[0, 1]`` (in code order);
* a training row's column becomes ``u`` in ``[0, 1]``: a continuous value its mid-rank
  ``(rank - 1/2) / n`` (above the missing share), a category a uniform draw inside its interval
  (seeded); then ``z = Phi^-1(u)``. The copula's correlation is the Pearson correlation of the
  ``z`` columns (projected to the nearest valid correlation matrix where rounding broke it).

Sampling draws ``z ~ N(0, R)`` and maps each column back through ``Phi`` and its marginal. Rows of
given classes come from rejection sampling (:mod:`.base`): the copula generates each class at its
training frequency.

Fitting is closed-form, in ``setup`` (a second of CPU at most on tables of 10^5 rows): there are
no gradient steps (``trainer`` budget: one epoch, which runs validation and the table scores).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from scipy.special import ndtri
from scipy.stats import rankdata
from torch import Tensor, nn

from src.models.tabular.base import TableModule
from src.utils.errors import UserError
from src.utils.types import NonNegativeInt, PositiveInt

QUANTILES = 1000
# Normal scores are computed from u clipped to [EPS, 1 - EPS] (Phi^-1 is infinite at 0 and 1).
EPS = 1e-6
# Smallest eigenvalue kept when the estimated correlation is projected to a valid one.
MIN_EIGENVALUE = 1e-6


class GaussianCopulaModule(TableModule):
    """Gaussian copula with empirical marginals (see module docstring).

    Args beyond :class:`TableModule`'s: ``quantiles``, the most quantiles kept per continuous column.
    It names the table options it accepts rather than passing ``**table`` on: the encoding's
    (``continuous``, ``max_modes``, ``weight_threshold``, ``fit_rows``) mean nothing to it, so a
    config that sets them is refused.
    """

    monitor_candidates = ("val/quality",)

    def __init__(
        self,
        *,
        point_dim: PositiveInt | None = None,
        num_classes: NonNegativeInt = 0,
        quantiles: PositiveInt = QUANTILES,
        fit_seed: int | None = 0,
        eval_seed: int = 0,
        monitor: str | None = "auto",
        monitor_mode: Literal["min", "max"] | None = None,
        name: str = "gaussian_copula",
        image_size: int | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__(
            point_dim=point_dim,
            num_classes=num_classes,
            continuous="min_max",  # the copula does not use the encoded layout; nothing fitted for it
            fit_seed=fit_seed,
            eval_seed=eval_seed,
            monitor=monitor,
            monitor_mode=monitor_mode,
            name=name,
            image_size=image_size,
            channels=channels,
        )
        # Nothing to optimise: the fit is closed-form. Manual optimisation with no optimizer makes
        # Lightning run the epoch (validation, table scores, checkpoints) without any update.
        self.automatic_optimization = False
        self.quantiles = quantiles
        # DDP refuses to wrap a module without a trainable parameter, and the copula has none: an
        # empty one, never updated, lets `hardware=ddp` run its epoch (validation, scores) as usual,
        # and gives the no-op optimizer of `training_step` something to hold.
        self.ddp_placeholder = nn.Parameter(torch.zeros(0))

    # ------------------------------------------------------------------ fitting
    def fit_statistics(self, rows: np.ndarray) -> dict[str, Any]:
        assert self.schema is not None
        n, d = rows.shape
        rng = np.random.default_rng(np.random.SeedSequence([self.fit_seed, 1]))
        scores = np.empty((n, d))
        marginals: list[dict[str, Any]] = []
        for i, column in enumerate(self.schema.columns):
            values = rows[:, i]
            if column.kind == "continuous":
                observed = np.isfinite(values)
                p_missing = float(1.0 - observed.mean()) if n else 0.0
                kept = values[observed]
                u = np.empty(n)
                if len(kept):
                    ranks = rankdata(kept, method="average")
                    u[observed] = p_missing + (1 - p_missing) * (ranks - 0.5) / len(kept)
                    probs = np.linspace(0.0, 1.0, min(self.quantiles, len(kept)))
                    quantiles = np.quantile(kept, probs).tolist() if len(kept) > 1 else [float(kept[0])] * 2
                else:  # nothing observed in training: a placeholder at the schema's low end
                    quantiles = [float(column.low or 0.0)] * 2
                u[~observed] = rng.uniform(0.0, p_missing, size=int((~observed).sum()))
                marginals.append({"kind": "continuous", "p_missing": p_missing, "quantiles": quantiles})
            else:
                codes = np.clip(np.rint(values), 0, column.n_codes - 1).astype(int)
                counts = np.bincount(codes, minlength=column.n_codes).astype(float)
                probs = counts / max(counts.sum(), 1.0)
                upper = np.cumsum(probs)
                lower = upper - probs
                u = lower[codes] + rng.uniform(size=n) * probs[codes]
                marginals.append({"kind": "discrete", "probs": probs.tolist()})
            scores[:, i] = ndtri(np.clip(u, EPS, 1 - EPS))
        return {"marginals": marginals, "correlation": nearest_correlation(scores).tolist()}

    def build_networks(self) -> None:
        """No networks: the fitted marginals and the correlation's Cholesky factor, as buffers."""
        assert self.schema is not None
        marginals = self.statistics["marginals"]
        correlation = torch.tensor(self.statistics["correlation"], dtype=torch.float64)
        cholesky = torch.linalg.cholesky(correlation)
        continuous = [i for i, m in enumerate(marginals) if m["kind"] == "continuous"]
        discrete = [i for i, m in enumerate(marginals) if m["kind"] == "discrete"]
        widest = max((len(marginals[i]["quantiles"]) for i in continuous), default=2)
        quantiles = torch.zeros(len(continuous), widest, dtype=torch.float64)
        knots = torch.zeros(len(continuous), dtype=torch.long)
        for j, i in enumerate(continuous):
            q = marginals[i]["quantiles"]
            quantiles[j, : len(q)] = torch.tensor(q, dtype=torch.float64)
            knots[j] = len(q)
        widest = max((len(marginals[i]["probs"]) for i in discrete), default=1)
        # Upper bounds of each category's interval; padding +inf (never below a u).
        bounds = torch.full((len(discrete), widest), math.inf, dtype=torch.float64)
        for j, i in enumerate(discrete):
            upper = np.cumsum(marginals[i]["probs"])
            bounds[j, : len(upper) - 1] = torch.tensor(upper[:-1], dtype=torch.float64)
        p_missing = torch.tensor([marginals[i]["p_missing"] for i in continuous], dtype=torch.float64)
        for name, value in {
            "cholesky": cholesky,
            "continuous_index": torch.tensor(continuous, dtype=torch.long),
            "discrete_index": torch.tensor(discrete, dtype=torch.long),
            "quantile_table": quantiles,
            "quantile_knots": knots,
            "p_missing": p_missing,
            "category_bounds": bounds,
        }.items():
            self.register_buffer(name, value.to(self.device), persistent=False)

    @property
    def correlation(self) -> Tensor:
        """The copula's correlation matrix of the normal scores, in column order."""
        return torch.tensor(self.statistics["correlation"], dtype=torch.float64)

    # ------------------------------------------------------------------ training: none
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        # A step that changes nothing (no gradient, learning rate 0) but that Lightning counts:
        # checkpoints are written only once `global_step` has advanced.
        self.optimizers().step()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.ddp_placeholder], lr=0.0)

    # ------------------------------------------------------------------ sampling
    def generate_rows(self, n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor:
        assert self.schema is not None
        d = len(self.schema)
        eps = torch.randn(n, d, generator=generator, device=self.device, dtype=torch.float64)
        u = 0.5 * (1 + torch.erf((eps @ self.cholesky.T) / math.sqrt(2)))
        rows = torch.empty(n, d, dtype=torch.float32, device=self.device)
        if len(self.continuous_index):
            uc = u[:, self.continuous_index]
            missing = uc < self.p_missing
            inner = ((uc - self.p_missing) / (1 - self.p_missing).clamp_min(EPS)).clamp(0, 1)
            position = inner * (self.quantile_knots - 1)
            low = position.floor().long().clamp(max=self.quantile_knots - 2)
            frac = position - low
            table = self.quantile_table.T  # (knots, columns): gather per column
            left = table.gather(0, low)
            right = table.gather(0, low + 1)
            values = left + frac * (right - left)
            rows[:, self.continuous_index] = torch.where(missing, math.nan, values).float()
        if len(self.discrete_index):
            ud = u[:, self.discrete_index]
            rows[:, self.discrete_index] = (ud[:, :, None] >= self.category_bounds).sum(2).float()
        return rows

    # ------------------------------------------------------------------ privacy
    def private_part(self) -> str:
        raise UserError(
            f"privacy=dp trains networks with DP-SGD, and model={self.model_name} has none (its fit is closed-form on "
            "the training rows): use model=tvae or model=ctgan with privacy=dp."
        )

    def private_networks(self) -> dict[str, nn.Module]:
        self.private_part()
        return {}


def nearest_correlation(scores: np.ndarray) -> np.ndarray:
    """The Pearson correlation of the columns of ``scores``, made a valid correlation matrix:
    constant columns uncorrelated, eigenvalues at least :data:`MIN_EIGENVALUE`, unit diagonal."""
    d = scores.shape[1]
    if len(scores) < 2:
        return np.eye(d)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(scores, rowvar=False).reshape(d, d)
    corr = np.nan_to_num(corr, nan=0.0)
    np.fill_diagonal(corr, 1.0)
    corr = (corr + corr.T) / 2
    values, vectors = np.linalg.eigh(corr)
    if values.min() < MIN_EIGENVALUE:
        corr = (vectors * np.maximum(values, MIN_EIGENVALUE)) @ vectors.T
        scale = np.sqrt(np.diag(corr))
        corr = corr / scale[:, None] / scale[None, :]
    return corr
