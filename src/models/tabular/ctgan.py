"""CTGAN (Xu et al. 2019): a conditional WGAN-GP on mode-specific normalised rows.

As published:

* **Conditional vector and training-by-sampling.** The conditional vector is the concatenated
  one-hots of every discrete column, with one category set. In training, each row's condition
  picks a discrete column uniformly and a category of it with probability proportional to the log
  of its frequency (``log(1 + count)``): rare categories are asked for far more often than they
  occur. The real rows the discriminator compares with are drawn from the training rows that have
  the asked category (training-by-sampling), so both sides share the conditions. The generator
  pays a cross-entropy term for rows whose asked column does not have the asked category.
  Unconditional sampling draws conditions with the categories' plain frequencies.
* **Generator:** two residual blocks (Linear 256, batch norm, ReLU, input concatenated), a linear
  output; ``tanh`` for every ``alpha``, Gumbel-softmax (``tau`` 0.2) for every one-hot span.
* **Discriminator:** PacGAN (``pac`` 10 rows per input), two blocks of Linear 256, LeakyReLU 0.2
  and dropout 0.5; Wasserstein loss with gradient penalty 10 (interpolates drawn per pack, the
  penalty on each pack's gradient norm).
* Adam (lr 2e-4, betas 0.5 / 0.9, weight decay 1e-6) for both networks.

One training step is one discriminator update (every ``n_critic``-th step also a generator
update), on as many rows as the loader's batch (rounded down to a multiple of ``pac``);
``trainer.global_step`` counts generator updates, as for the GANs (:mod:`src.models.gan`), whose update
scheme it shares (:class:`src.models.adversarial.AdversarialTraining`).

Rows of given classes: the conditional vector asks for the class on the target column; rows whose
generated target disagrees are drawn again (:meth:`TableModule.generate_labelled_rows`).

``privacy=dp``: the discriminator is trained with DP-SGD, the generator is private by
post-processing (as :mod:`src.models.gan`). What cannot be private is off by default under it and
refused when set explicitly: PacGAN (a pack's gradient mixes ``pac`` rows, so no row has a
gradient of its own to clip: ``pac`` 1), the gradient penalty (per-example double
back-propagation, which Opacus does not compute: ``gp_weight`` 0, hence the non-saturating loss
instead of the Wasserstein one, which needs a Lipschitz critic), and the conditional vector with
training-by-sampling (its log-frequencies are statistics of the training rows, and it draws real
rows outside the Poisson batches the accountant charges): the real rows are then the Poisson
batch, the generator is unconditional, and rows of given classes come from rejection sampling.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor, nn

from src.models.adversarial import AdversarialTraining, exponential_moving_average
from src.models.base import OptimizerFactory, SchedulerFactory
from src.models.losses import GanLoss, NonSaturatingLoss, WassersteinLoss
from src.models.tabular.base import TableModule
from src.utils.errors import UserError
from src.utils.types import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt

CtganLoss = Literal["wasserstein", "non_saturating"]
LOSSES: dict[str, type[GanLoss]] = {"wasserstein": WassersteinLoss, "non_saturating": NonSaturatingLoss}
DEFAULTS: dict[str, Any] = {"pac": 10, "gp_weight": 10.0, "loss": "wasserstein", "conditional_vector": True}


# ---------------------------------------------------------------------- networks
class Residual(nn.Module):
    """Linear, batch norm, ReLU; the input is concatenated to the output (CTGAN's generator block)."""

    def __init__(self, i: int, o: int) -> None:
        super().__init__()
        self.fc = nn.Linear(i, o)
        self.bn = nn.BatchNorm1d(o)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([torch.relu(self.bn(self.fc(x))), x], dim=1)


class CtganGenerator(nn.Module):
    def __init__(self, input_dim: int, dims: list[int], data_dim: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = input_dim
        for d in dims:
            blocks.append(Residual(width, d))
            width += d
        self.body = nn.Sequential(*blocks)
        self.out = nn.Linear(width, data_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x))


class CtganDiscriminator(nn.Module):
    """Scores packs of ``pac`` rows (each row with its condition): one output per pack."""

    def __init__(self, input_dim: int, dims: list[int], pac: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.pac = pac
        self.pac_dim = input_dim * pac
        layers: list[nn.Module] = []
        width = self.pac_dim
        for d in dims:
            layers += [nn.Linear(width, d), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
            width = d
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x.reshape(-1, self.pac_dim)).flatten()


class ConditionSampler(nn.Module):
    """CTGAN's conditional vectors over the discrete columns (see module docstring).

    Args:
        counts: per discrete column (schema order), the training rows of each code.

    Its tensors are non-persistent buffers: they follow the model's device and stay out of its
    ``state_dict`` (the counts travel in the checkpoint's table state).
    """

    def __init__(self, counts: list[list[int]]) -> None:
        super().__init__()
        self.dims = [len(c) for c in counts]
        self.columns = len(counts)
        self.dim = sum(self.dims)
        widest = max(self.dims, default=1)
        counts_t = torch.zeros(self.columns, widest, dtype=torch.float64)
        for j, c in enumerate(counts):
            counts_t[j, : len(c)] = torch.tensor(c, dtype=torch.float64)
        # Probabilities per column over its codes (padding 0): log-frequency for training, plain for sampling.
        log_freq = torch.log1p(counts_t)
        self.register_buffer(
            "train_probs", log_freq / log_freq.sum(1, keepdim=True).clamp_min(1e-12), persistent=False
        )
        self.register_buffer(
            "sample_probs", counts_t / counts_t.sum(1, keepdim=True).clamp_min(1e-12), persistent=False
        )
        offsets = torch.tensor(np.cumsum([0, *self.dims[:-1]]), dtype=torch.long)
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("codes", torch.tensor(self.dims, dtype=torch.long), persistent=False)

    def vector(self, column: Tensor, code: Tensor) -> Tensor:
        """Conditions asking discrete column ``column[i]`` for code ``code[i]``."""
        cond = torch.zeros(len(column), self.dim, device=self.offsets.device)
        cond[torch.arange(len(column), device=cond.device), self.offsets[column] + code] = 1.0
        return cond

    def _draw(self, n: int, probs: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        column = torch.randint(self.columns, (n,), generator=generator, device=probs.device)
        code = torch.multinomial(probs[column], 1, generator=generator).flatten()
        return column, code

    def sample_train(self, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
        """``(cond (n, dim), column (n,), code (n,))`` with log-frequency categories."""
        column, code = self._draw(n, self.train_probs, generator)
        return self.vector(column, code), column, code

    def sample_original(self, n: int, generator: torch.Generator | None) -> Tensor:
        """Conditions with the categories' training frequencies (unconditional sampling)."""
        column, code = self._draw(n, self.sample_probs, generator)
        return self.vector(column, code)

    def for_codes(self, column: int, codes: Tensor) -> Tensor:
        """Conditions asking discrete column number ``column`` for ``codes``."""
        return self.vector(torch.full_like(codes, column), codes)


class RowsByCategory:
    """Training rows indexed by the category of each discrete column, for training-by-sampling."""

    def __init__(self, codes: Tensor, dims: list[int]) -> None:
        # codes: (N, columns) long on the device; one sorted order per column.
        n = len(codes)
        self.order = torch.argsort(codes, dim=0, stable=True).T.contiguous()  # (columns, N)
        widest = max(dims, default=1)
        counts = torch.zeros(len(dims), widest, dtype=torch.long, device=codes.device)
        for j, d in enumerate(dims):
            counts[j, :d] = torch.bincount(codes[:, j], minlength=d)[:d]
        self.counts = counts
        self.starts = torch.cumsum(counts, dim=1) - counts
        self.n = n

    def draw(self, column: Tensor, code: Tensor, generator: torch.Generator | None) -> Tensor:
        """Indices of training rows, one per ``(column, code)``, uniform among the rows having it."""
        count = self.counts[column, code]
        u = torch.rand(len(column), generator=generator, device=column.device)
        offset = (u * count).long().clamp_max((count - 1).clamp_min(0))
        return self.order[column, self.starts[column, code] + offset]


# ---------------------------------------------------------------------- the module
class CtganModule(AdversarialTraining, TableModule):
    """CTGAN (see module docstring). Args beyond :class:`TableModule`'s (``**table`` passes those on):

    latent_dim, generator_dims, discriminator_dims: published 128, (256, 256), (256, 256).
    pac: rows per discriminator input (PacGAN); ``null``: 10, or 1 under ``privacy=dp``.
    gp_weight: gradient penalty weight; ``null``: 10, or 0 under ``privacy=dp``.
    loss: ``wasserstein`` | ``non_saturating``; ``null``: Wasserstein, or non-saturating under DP.
    conditional_vector: CTGAN's conditional vector and training-by-sampling; ``null``: on (tables
        with a discrete column), off under ``privacy=dp``.
    tau: Gumbel-softmax temperature of the one-hot spans.
    n_critic: discriminator updates per generator update (published: 1).
    ema, ema_decay: sample from a moving average of the generator (off as published).
    """

    membership_attack = "discriminator"
    monitor_candidates = ("val/quality", "val/d_acc")

    def __init__(
        self,
        *,
        latent_dim: PositiveInt = 128,
        generator_dims: tuple[PositiveInt, ...] = (256, 256),
        discriminator_dims: tuple[PositiveInt, ...] = (256, 256),
        pac: PositiveInt | None = None,
        gp_weight: NonNegativeFloat | None = None,
        loss: CtganLoss | None = None,
        conditional_vector: bool | None = None,
        tau: PositiveFloat = 0.2,
        dropout: Fraction = 0.5,
        n_critic: PositiveInt = 1,
        ema: bool = False,
        ema_decay: Fraction = 0.999,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        scheduler_g: SchedulerFactory | None = None,
        scheduler_d: SchedulerFactory | None = None,
        name: str = "ctgan",
        **table: Any,
    ) -> None:
        super().__init__(name=name, **table)
        self.automatic_optimization = False
        self.latent_dim = latent_dim
        self.generator_dims = list(generator_dims)
        self.discriminator_dims = list(discriminator_dims)
        self.options = {
            "pac": pac,
            "gp_weight": gp_weight,
            "loss": loss,
            "conditional_vector": conditional_vector,
        }
        if (loss or "wasserstein") == "wasserstein" and gp_weight == 0:
            raise UserError(
                f"model={name}: the Wasserstein loss needs a Lipschitz critic, or its outputs grow without bound: "
                "set model.gp_weight>0 (or null), or model.loss=non_saturating."
            )
        self.tau = tau
        self.dropout = dropout
        self.n_critic = n_critic
        self.ema_decay = ema_decay if ema else None
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        self.scheduler_g, self.scheduler_d = scheduler_g, scheduler_d
        self.gradient_clip_val: float | None = None
        self.gradient_clip_algorithm: Literal["norm", "value"] = "norm"
        self.generator: CtganGenerator | None = None
        self.discriminator: CtganDiscriminator | None = None
        self.generator_ema: nn.Module | None = None
        self.conditions: ConditionSampler | None = None
        self.rows_by_category: RowsByCategory | None = None
        self._train_rows: Tensor | None = None

    # ------------------------------------------------------------------ settings and statistics
    def resolve_settings(self, private: bool) -> dict[str, Any]:
        settings = super().resolve_settings(private)
        given = self.options
        if private:
            refusals = {
                "pac": (
                    given["pac"] not in (None, 1),
                    "packs several rows into one discriminator input, so no row "
                    "has a gradient of its own to clip: set model.pac=1",
                ),
                "gp_weight": (
                    bool(given["gp_weight"]),
                    "needs each row's input gradient inside its own clipped "
                    "gradient (per-example double back-propagation), which Opacus does not compute: "
                    "set model.gp_weight=0",
                ),
                "loss": (
                    given["loss"] == "wasserstein",
                    "needs a Lipschitz critic, which only the gradient "
                    "penalty gives here: set model.loss=non_saturating",
                ),
                "conditional_vector": (
                    bool(given["conditional_vector"]),
                    "draws its categories with the training "
                    "rows' frequencies and its real rows outside the Poisson batches: set "
                    "model.conditional_vector=false",
                ),
            }
            for key, (refused, why) in refusals.items():
                if refused:
                    raise UserError(
                        f"privacy=dp: model.{key}={given[key]} {why} (or leave it null, which does so under privacy=dp)."
                    )
            resolved = {"pac": 1, "gp_weight": 0.0, "loss": "non_saturating", "conditional_vector": False}
        else:
            resolved = {key: DEFAULTS[key] if value is None else value for key, value in given.items()}
        return {**settings, **resolved}

    def fit_statistics(self, rows: np.ndarray) -> dict[str, Any]:
        assert self.schema is not None
        if not self._conditional_vector:
            return {}
        counts = []
        for i in self.schema.discrete_indices:
            n_codes = self.schema.columns[i].n_codes
            codes = np.clip(np.rint(rows[:, i]), 0, n_codes - 1).astype(int)
            counts.append(np.bincount(codes, minlength=n_codes).tolist())
        return {"category_counts": counts}

    @property
    def _conditional_vector(self) -> bool:
        """Whether this model uses CTGAN's conditional vector (settings decided, a discrete column)."""
        return bool(self.settings.get("conditional_vector")) and bool(
            self.schema and self.schema.discrete_indices
        )

    @property
    def pac(self) -> int:
        return int(self.settings["pac"])

    # ------------------------------------------------------------------ networks
    def build_networks(self) -> None:
        assert self.transformer is not None and self.schema is not None
        transformer = self.transformer
        device = self.device
        self.conditions = (
            ConditionSampler(self.statistics["category_counts"]) if self._conditional_vector else None
        )
        cond_dim = self.conditions.dim if self.conditions is not None else 0
        data_dim = transformer.output_dim
        self.generator = CtganGenerator(self.latent_dim + cond_dim, self.generator_dims, data_dim)
        self.discriminator = CtganDiscriminator(
            data_dim + cond_dim, self.discriminator_dims, self.pac, self.dropout
        )
        self.generator_ema = (
            exponential_moving_average(self.generator, self.ema_decay) if self.ema_decay is not None else None
        )
        self.loss = LOSSES[self.settings["loss"]]()
        self.gp_weight = float(self.settings["gp_weight"])
        self.register_span_buffers()
        cat_index, cat_valid = transformer.span_table(transformer.category_spans)
        self.register_buffer("span_flat", self.span_index[self.span_valid], persistent=False)
        self.register_buffer("category_index", cat_index, persistent=False)
        self.register_buffer("category_valid", cat_valid, persistent=False)
        self.to(device)

    @property
    def uses_ema(self) -> bool:  # type: ignore[override]
        return self.ema_decay is not None

    def activate(self, out: Tensor, generator: torch.Generator | None) -> Tensor:
        """Generator outputs -> rows of the encoded layout: ``tanh`` on alphas, Gumbel-softmax
        (``tau``) on one-hot spans, with noise from ``generator``."""
        act = torch.zeros_like(out)
        act[:, self.alpha_index] = torch.tanh(out[:, self.alpha_index])
        if self.span_index.numel():
            logits = out[:, self.span_index].float()
            u = torch.rand(logits.shape, generator=generator, device=out.device)
            gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))
            soft = torch.softmax(
                ((logits + gumbel) / self.tau).masked_fill(~self.span_valid, -math.inf), dim=2
            )
            act[:, self.span_flat] = soft[:, self.span_valid].to(act.dtype)
        return act

    def condition_loss(self, out: Tensor, column: Tensor, code: Tensor) -> Tensor:
        """Mean cross-entropy of the asked column's logits against the asked category."""
        logits = out[:, self.category_index].float().masked_fill(~self.category_valid, -math.inf)
        log_probs = torch.log_softmax(logits, dim=2)
        rows = torch.arange(len(out), device=out.device)
        return -log_probs[rows, column, code].mean()

    # ------------------------------------------------------------------ training
    def on_fit_start(self) -> None:
        if self.conditions is None:
            return
        # Training-by-sampling draws real rows from the whole train split (every rank the same rows,
        # its own draws); they live beside the model, never in its state_dict or checkpoints.
        assert self.schema is not None
        rows = self.trainer.datamodule.split("train")[0].to(self.device).float()
        codes = rows[:, self.schema.discrete_indices].round().long()
        self._train_rows = rows
        self.rows_by_category = RowsByCategory(codes, self.conditions.dims)

    def on_fit_end(self) -> None:
        self._train_rows = self.rows_by_category = None

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        rows, _ = batch
        optimizer_g, optimizer_d = self.optimizers()
        if self.private_training:
            logs = self._private_discriminator_update(optimizer_d, rows)
            n = int(self.privacy_engine.expected_batch_size)
        else:
            n = max(self.pac, len(rows) // self.pac * self.pac)
            logs = self._discriminator_update(optimizer_d, rows, n)
        if self._generator_due():
            logs.update(self._generator_update(optimizer_g, n))
        self.log_step_scalars(logs, batch_idx, prog_bar=("loss/d", "loss/g"))
        return logs

    def _fake(self, n: int, cond: Tensor | None, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Raw generator outputs and their activated rows (training generator)."""
        assert self.generator is not None
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        out = self.generator(torch.cat([z, cond], dim=1) if cond is not None else z)
        return out, self.activate(out, generator)

    def _discriminator_update(self, optimizer: LightningOptimizer, rows: Tensor, n: int) -> dict[str, Tensor]:
        assert self.transformer is not None and self.discriminator is not None
        gen = self.noise_generator
        if self.conditions is not None:
            assert self.rows_by_category is not None and self._train_rows is not None
            cond, column, code = self.conditions.sample_train(n, gen)
            perm = torch.randperm(n, generator=gen, device=self.device)
            real_rows = self._train_rows[self.rows_by_category.draw(column[perm], code[perm], gen)]
            real_cond: Tensor | None = cond[perm]
        else:
            cond = real_cond = None
            real_rows = rows[:n]
        with torch.no_grad():
            _, fake = self._fake(n, cond, gen)
        real = self.transformer.transform(real_rows, generator=gen)
        if cond is not None:
            real, fake = torch.cat([real, real_cond], dim=1), torch.cat([fake, cond], dim=1)
        loss = self.loss.discriminator(self.discriminator(real).float(), self.discriminator(fake).float())
        logs: dict[str, Tensor] = {}
        if self.gp_weight:
            penalty = self.gp_weight * self._gradient_penalty(real, fake, gen)
            logs["loss/gp"] = penalty
            loss = loss + penalty
        self._discriminator_step(optimizer, loss)
        logs["loss/d"] = loss
        return {k: v.detach() for k, v in logs.items()}

    def _gradient_penalty(self, real: Tensor, fake: Tensor, generator: torch.Generator | None) -> Tensor:
        """WGAN-GP on packs: one interpolation weight per pack, the norm of each pack's gradient."""
        assert self.discriminator is not None
        pac, dim = self.pac, real.shape[1]
        weight = torch.rand(len(real) // pac, 1, 1, generator=generator, device=real.device)
        weight = weight.expand(-1, pac, dim).reshape(-1, dim)
        mixed = (weight * real + (1 - weight) * fake).requires_grad_(True)
        out = self.discriminator(mixed).float()
        (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
        norms = grad.reshape(-1, pac * dim).norm(2, dim=1)
        return ((norms - 1) ** 2).mean()

    def _private_discriminator_update(self, optimizer: LightningOptimizer, rows: Tensor) -> dict[str, Tensor]:
        """One DP-SGD update (as :meth:`GanModule._private_discriminator_update`): the Poisson batch's
        rows and a fixed number of generated rows through the critic as one batch, one row each."""
        assert self.transformer is not None and self.discriminator is not None
        m = int(self.privacy_engine.expected_batch_size)
        with torch.no_grad():
            _, fake = self._fake(m, None, self.noise_generator)
        real = self.transformer.transform(rows, generator=self.noise_generator)
        out = self.discriminator(torch.cat([real, fake]))
        real_terms, fake_terms = self.loss.discriminator_terms(
            out[: len(rows)].float(), out[len(rows) :].float()
        )
        return self._private_discriminator_step(optimizer, real_terms, fake_terms)

    def _generator_update(self, optimizer: LightningOptimizer, n: int) -> dict[str, Tensor]:
        assert self.discriminator is not None
        gen = self.noise_generator

        def loss() -> Tensor:
            if self.conditions is not None:
                cond, column, code = self.conditions.sample_train(n, gen)
                out, fake = self._fake(n, cond, gen)
                adversarial = self.loss.generator(self.discriminator(torch.cat([fake, cond], dim=1)).float())
                return adversarial + self.condition_loss(out, column, code)
            _, fake = self._fake(n, None, gen)
            return self.loss.generator(self.discriminator(fake).float())

        return self._generator_step(optimizer, loss)

    # ------------------------------------------------------------------ evaluation
    def _row_conditions(self, rows: Tensor, generator: torch.Generator | None) -> Tensor | None:
        """Conditions read off real rows: a random discrete column each, with the row's own category."""
        if self.conditions is None:
            return None
        assert self.schema is not None
        column = torch.randint(self.conditions.columns, (len(rows),), generator=generator, device=rows.device)
        codes = rows[:, self.schema.discrete_indices].round().long()
        code = codes.gather(1, column[:, None]).flatten().clamp(min=0)
        code = torch.minimum(code, self.conditions.codes[column] - 1)
        return self.conditions.vector(column, code)

    def _evaluate(self, stage: str, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        assert self.transformer is not None and self.discriminator is not None
        rows, _ = batch
        n = len(rows) // self.pac * self.pac
        if n == 0:
            return
        rows = rows[:n]
        generator = torch.Generator(device=rows.device).manual_seed(self.eval_seed + batch_idx)
        cond = self._row_conditions(rows, generator)
        real = self.transformer.transform(rows, generator=generator)
        z = torch.randn(n, self.latent_dim, generator=generator, device=rows.device)
        fake = self.activate(
            self.sampling_generator(torch.cat([z, cond], 1) if cond is not None else z), generator
        )
        if cond is not None:
            real, fake = torch.cat([real, cond], 1), torch.cat([fake, cond], 1)
        real_out, fake_out = self.discriminator(real).float(), self.discriminator(fake).float()
        self._log_critic_scores(stage, real_out, fake_out)

    # ------------------------------------------------------------------ sampling
    def generate_rows(self, n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor:
        assert self.transformer is not None and self.schema is not None
        cond = None
        if self.conditions is not None:
            if labels is not None:
                column = self.schema.discrete_indices.index(self.schema.target_index)
                cond = self.conditions.for_codes(column, labels.to(self.device).long())
            else:
                cond = self.conditions.sample_original(n, generator)
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        out = self.sampling_generator(torch.cat([z, cond], 1) if cond is not None else z)
        return self.transformer.inverse(self.activate(out.float(), generator))

    @property
    def conditions_on_labels(self) -> bool:  # type: ignore[override]
        # Without the conditional vector (privacy=dp) rows of a class come from rejection sampling.
        return self.conditions is not None

    # ------------------------------------------------------------------ privacy and membership
    def private_networks(self) -> dict[str, nn.Module]:
        self._require_built()
        assert self.discriminator is not None
        return {"discriminator": self.discriminator}

    def private_part(self) -> str:
        return (
            "the discriminator, trained with DP-SGD (one row per input, no gradient penalty, no conditional "
            "vector); the generator sees data only through it (private by post-processing)"
        )

    @torch.no_grad()
    def membership_score(self, x: Tensor, y: Tensor | None) -> Tensor:
        """The discriminator's score of each row (LOGAN, Hayes et al. 2019), the row repeated to fill
        a pack, averaged over conditions on each discrete column's own category."""
        assert self.transformer is not None and self.discriminator is not None and self.schema is not None
        data = self.transformer.transform(x.float(), sample_modes=False)
        conditions: list[Tensor | None] = [None]
        if self.conditions is not None:
            codes = x[:, self.schema.discrete_indices].round().long()
            conditions = [self.conditions.for_codes(j, codes[:, j]) for j in range(self.conditions.columns)]
        total = torch.zeros(len(x), device=x.device)
        for cond in conditions:
            inputs = torch.cat([data, cond], 1) if cond is not None else data
            total += self.discriminator(inputs.repeat_interleave(self.pac, dim=0)).float()
        return total / len(conditions)
