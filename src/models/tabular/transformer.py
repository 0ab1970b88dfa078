"""Rows of a table as the vectors TVAE and CTGAN learn: mode-specific normalisation (Xu et al. 2019).

A row arrives in the raw layout of :mod:`src.utils.tables` (one float per column). Each column
becomes a few entries of the *encoded* vector, in schema order:

* a **continuous** column: a variational Gaussian mixture (scikit-learn's
  ``BayesianGaussianMixture``, Dirichlet-process prior with concentration ``1e-3``, at most 10
  modes; modes of weight < 0.005 dropped) models its values. A value ``v`` becomes a scalar
  ``alpha = (v - mu_k) / (4 sigma_k)``, clipped to ``[-1, 1]`` (a ``tanh`` span), followed by the
  one-hot of its mode ``k`` (a ``softmax`` span). In training, ``k`` is drawn from the mode's
  posterior given ``v``, as in the paper; ``sample_modes=False`` takes its most likely mode. A
  missing value (``NaN``) is one more state of that one-hot, with ``alpha = 0``.
* a **discrete** column: the one-hot of its code (a ``softmax`` span; the missing state of the
  schema is one of the codes).

``continuous="min_max"`` replaces the mixture by one mode spanning the column's range as the
schema states it (``alpha`` is the value scaled to ``[-1, 1]``): nothing is fitted to the
training rows, which is what differentially private training needs (the mixture's means and
widths are statistics of the training split that DP-SGD does not cover).

Fitting reads at most ``max_rows`` values per column (a seeded subsample: the mixture's cost grows
with the rows, its estimate hardly does beyond a few thousand), and every process fits the same
mixture from the same seed, so DDP ranks agree. Encoding and decoding are torch operations on the
rows' device, vectorised over columns; what they need (means, widths, weights of the kept modes)
is plain data (:meth:`DataTransformer.to_dict`), so a checkpoint rebuilds the transformer without
scikit-learn objects.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from src.utils.tables import TableSchema

Activation = Literal["tanh", "softmax"]
ContinuousEncoding = Literal["mode_specific", "min_max"]
SpanRole = Literal["alpha", "mode", "category"]

MAX_MODES = 10
WEIGHT_THRESHOLD = 0.005
WEIGHT_CONCENTRATION_PRIOR = 1e-3
MAX_FIT_ROWS = 20_000
# alpha = (v - mu) / (4 sigma): four standard deviations of a mode map to the tanh range.
ALPHA_SCALE = 4.0


@dataclass(frozen=True)
class Span:
    """A stretch of the encoded vector: ``dim`` entries from ``start``, for schema column ``column``.

    ``activation`` is what a network's output there goes through (``tanh`` for ``alpha``,
    ``softmax`` for a one-hot); ``role`` says which part of the column it encodes.
    """

    start: int
    dim: int
    activation: Activation
    column: int
    role: SpanRole

    @property
    def end(self) -> int:
        return self.start + self.dim


@dataclass(frozen=True)
class ColumnModes:
    """The kept mixture modes of one continuous column (``missing``: one more state for ``NaN``)."""

    means: tuple[float, ...]
    stds: tuple[float, ...]
    weights: tuple[float, ...]
    missing: bool

    @property
    def n_states(self) -> int:
        return len(self.means) + int(self.missing)


class DataTransformer:
    """Encodes raw-layout rows for TVAE / CTGAN and decodes their outputs (see module docstring).

    Build with :meth:`fit` (from training rows) or :meth:`from_dict` (from a checkpoint).
    """

    def __init__(
        self, schema: TableSchema, modes: dict[int, ColumnModes], continuous: ContinuousEncoding
    ) -> None:
        self.schema = schema
        self.modes = modes
        self.continuous = continuous
        spans: list[Span] = []
        start = 0
        for i, column in enumerate(schema.columns):
            if column.kind == "continuous":
                spans.append(Span(start, 1, "tanh", i, "alpha"))
                spans.append(Span(start + 1, modes[i].n_states, "softmax", i, "mode"))
                start += 1 + modes[i].n_states
            else:
                spans.append(Span(start, column.n_codes, "softmax", i, "category"))
                start += column.n_codes
        self.output_info: list[Span] = spans
        self.output_dim = start
        self._device_cache: dict[torch.device, dict[str, Tensor]] = {}

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        schema: TableSchema,
        rows: np.ndarray,
        *,
        continuous: ContinuousEncoding = "mode_specific",
        max_modes: int = MAX_MODES,
        weight_threshold: float = WEIGHT_THRESHOLD,
        max_rows: int = MAX_FIT_ROWS,
        seed: int = 0,
    ) -> DataTransformer:
        """The transformer of ``schema`` fitted on raw-layout ``rows`` ``(N, len(schema))``.

        ``continuous="min_max"`` reads nothing from ``rows`` (the schema's ranges only).
        """
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(schema):
            raise ValueError(f"expected rows of {len(schema)} columns, got shape {rows.shape}")
        modes: dict[int, ColumnModes] = {}
        for i in schema.continuous_indices:
            column = schema.columns[i]
            if continuous == "min_max":
                modes[i] = _range_mode(column.low, column.high, column.missing)
                continue
            column_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
            modes[i] = _fit_modes(
                rows[:, i], column.missing, max_modes, weight_threshold, max_rows, column_seed
            )
        return cls(schema, modes, continuous)

    # ------------------------------------------------------------------ facts for networks and losses
    @property
    def alpha_spans(self) -> list[Span]:
        return [s for s in self.output_info if s.role == "alpha"]

    @property
    def softmax_spans(self) -> list[Span]:
        return [s for s in self.output_info if s.activation == "softmax"]

    @property
    def category_spans(self) -> list[Span]:
        """The one-hot spans of the discrete columns (CTGAN's conditional vector covers these)."""
        return [s for s in self.output_info if s.role == "category"]

    def span_table(self, spans: list[Span], device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """``(index, valid)``, both ``(len(spans), widest)``: the encoded positions of each span,
        padded (``valid`` False) to the widest, for vectorised per-span softmax and argmax."""
        widest = max((s.dim for s in spans), default=1)
        index = torch.zeros(len(spans), widest, dtype=torch.long)
        valid = torch.zeros(len(spans), widest, dtype=torch.bool)
        for j, span in enumerate(spans):
            index[j, : span.dim] = torch.arange(span.start, span.end)
            valid[j, : span.dim] = True
        return index.to(device), valid.to(device)

    def _tables(self, device: torch.device) -> dict[str, Tensor]:
        """Per-device constants of :meth:`transform` and :meth:`inverse` (built once per device)."""
        if device in self._device_cache:
            return self._device_cache[device]
        continuous = self.schema.continuous_indices
        discrete = self.schema.discrete_indices
        widest = max((self.modes[i].n_states for i in continuous), default=1)
        means = torch.zeros(len(continuous), widest, dtype=torch.float64)
        stds = torch.ones(len(continuous), widest, dtype=torch.float64)
        log_weights = torch.full((len(continuous), widest), -math.inf, dtype=torch.float64)
        n_modes = torch.zeros(len(continuous), dtype=torch.long)
        for j, i in enumerate(continuous):
            m = self.modes[i]
            k = len(m.means)
            means[j, :k] = torch.tensor(m.means, dtype=torch.float64)
            stds[j, :k] = torch.tensor(m.stds, dtype=torch.float64)
            log_weights[j, :k] = torch.log(torch.tensor(m.weights, dtype=torch.float64))
            n_modes[j] = k
        alpha_spans = self.alpha_spans
        mode_spans = [s for s in self.output_info if s.role == "mode"]
        category_spans = self.category_spans
        mode_index, mode_valid = self.span_table(mode_spans)
        category_index, category_valid = self.span_table(category_spans)
        tables = {
            "continuous": torch.tensor(continuous, dtype=torch.long),
            "discrete": torch.tensor(discrete, dtype=torch.long),
            "means": means,
            "stds": stds,
            "log_weights": log_weights,
            "n_modes": n_modes,
            "alpha_pos": torch.tensor([s.start for s in alpha_spans], dtype=torch.long),
            "mode_start": torch.tensor([s.start for s in mode_spans], dtype=torch.long),
            "mode_index": mode_index,
            "mode_valid": mode_valid,
            "category_start": torch.tensor([s.start for s in category_spans], dtype=torch.long),
            "category_codes": torch.tensor([s.dim for s in category_spans], dtype=torch.long),
            "category_index": category_index,
            "category_valid": category_valid,
        }
        tables = {k: v.to(device) for k, v in tables.items()}
        self._device_cache[device] = tables
        return tables

    # ------------------------------------------------------------------ rows <-> encoded vectors
    def transform(
        self, rows: Tensor, generator: torch.Generator | None = None, sample_modes: bool = True
    ) -> Tensor:
        """Raw-layout rows ``(N, len(schema))`` -> encoded float32 ``(N, output_dim)``, on their device.

        ``sample_modes``: draw each value's mode from its posterior (training, as published;
        ``generator`` makes the draw reproducible) or take the most likely one.
        """
        rows = rows.detach()
        device = rows.device
        t = self._tables(device)
        out = torch.zeros(len(rows), self.output_dim, dtype=torch.float32, device=device)
        if len(t["continuous"]):
            values = rows[:, t["continuous"]].double()  # (N, C)
            missing = torch.isnan(values)
            filled = torch.where(missing, torch.zeros_like(values), values)
            z = (filled[:, :, None] - t["means"]) / t["stds"]  # (N, C, K)
            log_post = t["log_weights"] - torch.log(t["stds"]) - 0.5 * z**2
            if sample_modes:
                # Gumbel-max: a draw from the posterior over the kept modes.
                u = torch.rand(log_post.shape, generator=generator, device=device, dtype=torch.float64)
                log_post = log_post - torch.log(-torch.log(u.clamp_min(1e-300)))
            mode = log_post.argmax(dim=2)  # (N, C); padding states have log weight -inf
            mean = t["means"].gather(1, mode.T).T
            std = t["stds"].gather(1, mode.T).T
            alpha = ((filled - mean) / (ALPHA_SCALE * std)).clamp(-1.0, 1.0)
            alpha = torch.where(missing, torch.zeros_like(alpha), alpha)
            mode = torch.where(missing, t["n_modes"].expand_as(mode), mode)
            out[:, t["alpha_pos"]] = alpha.float()
            out.scatter_(1, t["mode_start"] + mode, 1.0)
        if len(t["discrete"]):
            codes = rows[:, t["discrete"]]
            codes = torch.nan_to_num(codes, nan=-1.0).round().long()
            # An out-of-range code (never in a schema-encoded table) lands on the last state.
            codes = torch.where((codes < 0) | (codes >= t["category_codes"]), t["category_codes"] - 1, codes)
            out.scatter_(1, t["category_start"] + codes, 1.0)
        return out

    def inverse(self, encoded: Tensor) -> Tensor:
        """Encoded vectors (``alpha`` entries in ``[-1, 1]``, any scores in the one-hot spans:
        probabilities, logits or one-hots; the largest wins) -> raw-layout float32 rows."""
        encoded = encoded.detach()
        device = encoded.device
        t = self._tables(device)
        rows = torch.empty(len(encoded), len(self.schema), dtype=torch.float32, device=device)
        if len(t["continuous"]):
            scores = encoded[:, t["mode_index"]].masked_fill(~t["mode_valid"], -math.inf)
            state = scores.argmax(dim=2)  # (N, C)
            missing = state >= t["n_modes"]
            mode = torch.where(missing, torch.zeros_like(state), state)
            alpha = encoded[:, t["alpha_pos"]].double().clamp(-1.0, 1.0)
            mean = t["means"].gather(1, mode.T).T
            std = t["stds"].gather(1, mode.T).T
            values = alpha * ALPHA_SCALE * std + mean
            values = torch.where(missing, torch.full_like(values, math.nan), values)
            rows[:, t["continuous"]] = values.float()
        if len(t["discrete"]):
            scores = encoded[:, t["category_index"]].masked_fill(~t["category_valid"], -math.inf)
            rows[:, t["discrete"]] = scores.argmax(dim=2).float()
        return rows

    # ------------------------------------------------------------------ records
    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists of floats): all :meth:`from_dict` needs, with the schema."""
        return {
            "continuous": self.continuous,
            "modes": {
                str(i): {
                    "means": list(m.means),
                    "stds": list(m.stds),
                    "weights": list(m.weights),
                    "missing": m.missing,
                }
                for i, m in self.modes.items()
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], schema: TableSchema) -> DataTransformer:
        modes = {
            int(i): ColumnModes(tuple(m["means"]), tuple(m["stds"]), tuple(m["weights"]), bool(m["missing"]))
            for i, m in d["modes"].items()
        }
        return cls(schema, modes, d["continuous"])


# ---------------------------------------------------------------------- mixtures
def _range_mode(low: float | None, high: float | None, missing: bool) -> ColumnModes:
    """One mode whose alpha maps the column's stated range onto ``[-1, 1]``."""
    low = 0.0 if low is None else float(low)
    high = low if high is None else float(high)
    width = high - low
    std = width / (2 * ALPHA_SCALE) if width > 0 else max(abs(low), 1.0) * 1e-6
    return ColumnModes(((low + high) / 2,), (std,), (1.0,), missing)


def _fit_modes(
    values: np.ndarray,
    missing: bool,
    max_modes: int,
    weight_threshold: float,
    max_rows: int,
    seed: int,
) -> ColumnModes:
    """The variational Gaussian mixture of one column's observed values (module docstring)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture

    values = values[np.isfinite(values)]
    if len(values) == 0:  # no value observed in the training rows: a placeholder mode
        return ColumnModes((0.0,), (1.0,), (1.0,), missing)
    rng = np.random.default_rng(seed)
    if len(values) > max_rows:
        values = rng.choice(values, size=max_rows, replace=False)
    # Standardised for the fit: the mixture's covariance floor (reg_covar = 1e-6) is absolute, so
    # a column measured in thousandths would otherwise get one mode far wider than its values.
    center, scale = float(values.mean()), float(values.std())
    if scale <= 0 or len(np.unique(values)) < 2:
        return ColumnModes((center,), (max(abs(center), 1.0) * 1e-3,), (1.0,), missing)
    standard = ((values - center) / scale).reshape(-1, 1)
    mixture = BayesianGaussianMixture(
        n_components=min(max_modes, len(standard)),
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=WEIGHT_CONCENTRATION_PRIOR,
        n_init=1,
        max_iter=100,
        random_state=seed % (2**32 - 1),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mixture.fit(standard)
    weights = mixture.weights_
    keep = weights > weight_threshold
    if not keep.any():
        keep = weights == weights.max()
    means = mixture.means_.reshape(-1)[keep] * scale + center
    stds = np.sqrt(mixture.covariances_.reshape(-1)[keep]) * scale
    kept = weights[keep] / weights[keep].sum()
    order = np.argsort(means)  # modes in value order: a stable, readable layout
    return ColumnModes(
        tuple(float(v) for v in means[order]),
        tuple(float(v) for v in stds[order]),
        tuple(float(v) for v in kept[order]),
        missing,
    )
