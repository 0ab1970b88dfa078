"""What every table model shares: its data, its checkpoints, and sampling rows (with given classes).

A table model cannot size its networks from the config alone: the encoded width depends on the
modes the transformer finds in the training rows. So :class:`TableModule` builds in two stages:

1. the constructor takes the config (``point_dim`` = columns, ``num_classes`` = target classes);
2. :meth:`TableModule.build_from_data` (Lightning's ``setup``, or the privacy engine's ``plan``
   under ``privacy=dp``, which must hook the private networks before training) reads the
   datamodule's ``schema`` and train split, fits the transformer and the model's statistics
   (:meth:`~TableModule.fit_statistics`) and calls :meth:`~TableModule.build_networks`.

Everything stage 2 produced that is not a weight (schema, transformer, statistics, the settings
that privacy decided) is plain data in the checkpoint under :data:`TABLE_KEY`;
``on_load_checkpoint`` rebuilds the networks from it before the weights load (as Lightning does
on resume, and :meth:`GenerativeModule.from_checkpoint`), so a checkpoint samples without data.

Rows leave :meth:`~TableModule.sample` in the raw layout (``(n, columns)`` float32, ``NaN`` =
missing continuous value, discrete = category code). With ``labels`` (target codes) every row has
that class: models without a conditional input draw rows and keep those of the asked classes, in
batches (CTGAN asks its conditional vector first and redraws only rows whose class came out
wrong); after :data:`MAX_REJECTION_DRAWS` generated rows per asked row (at least
:data:`MIN_REJECTION_BUDGET`) they stop with a :class:`UserError` naming the class.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from src.models.base import GenerativeModule
from src.models.tabular.transformer import MAX_FIT_ROWS, ContinuousEncoding, DataTransformer
from src.utils.errors import UserError
from src.utils.logging import get_logger
from src.utils.tables import TableSchema
from src.utils.types import NonNegativeInt, PositiveInt

log = get_logger(__name__)

# Where a table model's non-weight state sits in a checkpoint.
TABLE_KEY = "genlab_table_model"
# Rejection sampling of rows with given classes: at most this many generated rows per asked row ...
MAX_REJECTION_DRAWS = 200
# ... and at least this many in all (a few asked rows of a rare class still get their chance) ...
MIN_REJECTION_BUDGET = 100_000
# ... in batches of at least / at most this many rows.
REJECTION_BATCH = (1024, 65_536)
# Rows generated at once by `sample` (bounded memory whatever n).
SAMPLE_CHUNK = 16_384


class TableModule(GenerativeModule):
    """Base of TVAE, CTGAN and the Gaussian copula (see module docstring).

    Args:
        point_dim: columns of the table (``${data.point_dim}``), checked against its schema.
        num_classes: classes of the target column (0: no target); rows can be drawn per class.
        continuous: ``mode_specific`` (a Gaussian mixture per continuous column, as published) or
            ``min_max``; ``null`` = ``mode_specific``, or ``min_max`` under ``privacy=dp`` (the
            mixture is a statistic of the training rows that DP-SGD does not cover).
        max_modes, weight_threshold, fit_rows: the mixture's modes, the weight below which a mode
            is dropped, the rows per column it is fitted on (a seeded subsample).
        fit_seed: seed of the transformer's fit (the run's seed): every DDP rank fits the same.
        eval_seed: seed of the noise in validation and test steps.

    Subclasses take these options as ``**table`` and pass them on (``src.runtime.config_check``
    follows the forwarding), except the copula, which names the few it accepts.
    """

    # `monitor: auto`: the table scores' quality when metrics=table logs it, else the model's own.
    monitor_candidates: tuple[str, ...] = ("val/quality",)

    def __init__(
        self,
        *,
        point_dim: PositiveInt | None = None,
        num_classes: NonNegativeInt = 0,
        continuous: ContinuousEncoding | None = None,
        max_modes: PositiveInt = 10,
        weight_threshold: float = 0.005,
        fit_rows: PositiveInt = MAX_FIT_ROWS,
        fit_seed: int | None = 0,
        eval_seed: int = 0,
        monitor: str | None = "auto",
        monitor_mode: Literal["min", "max"] | None = None,
        name: str = "table",
        image_size: int | None = None,
        channels: int | None = None,
    ) -> None:
        if image_size is not None or channels is not None or not point_dim:
            raise UserError(
                f"model={name} generates table rows, but this data is not a table: use data=table "
                "(data.path=..., data.target=...), data=breast_cancer, data=doctor_aus or data=adult."
            )
        super().__init__(
            image_size=None,
            channels=None,
            num_classes=num_classes,
            conditional=bool(num_classes),
            monitor=monitor,
            monitor_mode=monitor_mode,
            point_dim=point_dim,
            name=name,
        )
        self.data_kind = "table"  # type: ignore[assignment]
        self.continuous_option = continuous
        self.max_modes = max_modes
        self.weight_threshold = weight_threshold
        self.fit_rows = fit_rows
        self.fit_seed = int(fit_seed or 0) % 2**32  # seed sequences take non-negative seeds
        self.eval_seed = eval_seed
        self.schema: TableSchema | None = None
        self.transformer: DataTransformer | None = None
        self.statistics: dict[str, Any] = {}
        # Settings decided when the model meets its data (privacy), stored with the checkpoint.
        self.settings: dict[str, Any] = {}
        self.class_counts: list[int] | None = None
        self.noise_generator: torch.Generator | None = None

    # ------------------------------------------------------------------ data layout
    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (int(self.point_dim),)

    def to_model_range(self, x: Tensor) -> Tensor:
        return x.float()

    def to_unit(self, x: Tensor) -> Tensor:
        return x

    @property
    def networks_built(self) -> bool:
        """False until the model has met its data (or a checkpoint) and sized its networks."""
        return self.schema is not None

    # ------------------------------------------------------------------ building
    def setup(self, stage: str) -> None:
        if self.networks_built:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            raise UserError(
                f"model={self.model_name} learns from a table: train it with a table data module."
            )
        self.build_from_data(datamodule)

    def build_from_data(self, datamodule: Any) -> None:
        """Fits transformer and statistics on the datamodule's train split and builds the networks.

        Under ``privacy=dp`` the privacy engine calls this before training (it hooks the networks);
        ``self.privacy_engine`` is then set, and the model fits only what the guarantee covers.
        """
        schema = getattr(datamodule, "schema", None)
        if not isinstance(schema, TableSchema):
            raise UserError(
                f"model={self.model_name} generates table rows, but data={getattr(datamodule, 'name', '?')} is not a "
                "table: use data=table (data.path=...), data=breast_cancer or another table."
            )
        if len(schema) != self.point_dim:
            raise UserError(
                f"model.point_dim={self.point_dim} but the table has {len(schema)} columns: remove the override "
                "(model configs read it from ${data.point_dim})."
            )
        x, y = datamodule.split("train")
        rows = x.detach().cpu().numpy().astype(np.float64)
        private = self.privacy_engine is not None
        settings = self.resolve_settings(private)
        transformer = DataTransformer.fit(
            schema,
            rows,
            continuous=settings["continuous"],
            max_modes=self.max_modes,
            weight_threshold=self.weight_threshold,
            max_rows=self.fit_rows,
            seed=self.fit_seed,
        )
        counts = None
        if schema.target is not None and not private:
            counts = torch.bincount(y.detach().cpu().long(), minlength=schema.num_classes).tolist()
        self.schema, self.transformer, self.settings, self.class_counts = (
            schema,
            transformer,
            settings,
            counts,
        )
        self.statistics = self.fit_statistics(rows)
        self.build_networks()
        log.info(
            f"model={self.model_name}: {len(schema)} columns -> {transformer.output_dim} encoded entries "
            f"({transformer.continuous} continuous encoding)"
        )

    def resolve_settings(self, private: bool) -> dict[str, Any]:
        """Options whose default depends on ``privacy=dp``; an explicit value DP cannot honour is an
        error (subclasses add theirs)."""
        continuous = self.continuous_option
        if private and continuous == "mode_specific":
            raise UserError(
                "privacy=dp: model.continuous=mode_specific fits a Gaussian mixture to the training rows, which "
                "DP-SGD does not cover: set model.continuous=min_max (or null, which picks it under privacy=dp)."
            )
        return {"continuous": continuous or ("min_max" if private else "mode_specific")}

    def fit_statistics(self, rows: np.ndarray) -> dict[str, Any]:
        """What the model estimates from the raw training rows besides the transformer (plain data)."""
        return {}

    def build_networks(self) -> None:
        """Builds the networks from ``self.schema``, ``self.transformer``, ``self.statistics``."""
        raise NotImplementedError

    def register_span_buffers(self) -> None:
        """The encoded layout's constants, for the loss and for sampling: ``alpha_index`` (the entry of
        each continuous column's ``alpha``) and ``span_index`` / ``span_valid`` (the one-hot spans,
        padded). Not weights: rebuilt from the transformer, so they stay out of the ``state_dict``."""
        assert self.transformer is not None
        alpha = torch.tensor([s.start for s in self.transformer.alpha_spans], dtype=torch.long)
        index, valid = self.transformer.span_table(self.transformer.softmax_spans)
        self.register_buffer("alpha_index", alpha, persistent=False)
        self.register_buffer("span_index", index, persistent=False)
        self.register_buffer("span_valid", valid, persistent=False)

    # ------------------------------------------------------------------ checkpoints
    def table_state(self) -> dict[str, Any]:
        assert self.schema is not None and self.transformer is not None
        return {
            "schema": self.schema.to_dict(),
            "transformer": self.transformer.to_dict(),
            "settings": dict(self.settings),
            "statistics": self.statistics,
            "class_counts": self.class_counts,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.networks_built:
            checkpoint[TABLE_KEY] = self.table_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get(TABLE_KEY)
        if state is None:
            raise UserError(
                f"this checkpoint of model={self.model_name} has no table state ({TABLE_KEY}): it was written before "
                "the model met its data; use a checkpoint written during or after training."
            )
        if self.networks_built and _plain(self.table_state()) == _plain(state):
            return  # resuming on the same data: the networks built in setup() take the weights
        if self.private_training:
            # Rebuilt networks would lose the per-example gradient hooks of the privacy engine.
            raise UserError(
                "privacy=dp: the checkpoint's table encoding differs from the one this run built from its data: "
                "resume on the same data and model settings."
            )
        self.schema = TableSchema.from_dict(state["schema"])
        self.transformer = DataTransformer.from_dict(state["transformer"], self.schema)
        self.settings = dict(state["settings"])
        self.statistics = state["statistics"]
        self.class_counts = state["class_counts"]
        self.build_networks()

    # ------------------------------------------------------------------ lifecycle
    def on_train_start(self) -> None:
        # As the GANs: each DDP rank its own noise, and a resumed run continues reproducibly.
        entropy = [torch.initial_seed(), self.global_rank, self.global_step]
        seed = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
        self.noise_generator = torch.Generator(device=self.device).manual_seed(seed)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        return x.float(), y

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        # Defined by every table model, so that the validation loop (and the table scores of the
        # metrics callback at its end) runs even for a model without scores of its own.
        self._evaluate("val", batch, batch_idx)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate("test", batch, batch_idx)

    def _evaluate(self, stage: str, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Scores of the model's own on a held-out batch (none by default)."""

    def _require_built(self) -> None:
        if not self.networks_built:
            raise UserError(
                f"model={self.model_name} has not met its table yet: train it, or load it with "
                "GenerativeModule.from_checkpoint."
            )

    # ------------------------------------------------------------------ sampling
    def sample_labels(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Target codes in the training split's class frequencies (``None`` without a target).

        Under ``privacy=dp`` those frequencies are not kept (they are a statistic of the training
        rows): the classes are then those of ``n`` rows the model generates, a post-processing.
        """
        if not self.num_classes:
            return None
        self._require_built()
        if self.class_counts is None or sum(self.class_counts) == 0:
            rows = self.sample(n, generator=generator)
            return rows[:, self.schema.target_index].long()
        weights = torch.tensor(self.class_counts, dtype=torch.float, device=self.device)
        return torch.multinomial(weights, n, replacement=True, generator=generator)

    @torch.inference_mode()
    def sample(
        self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """``n`` rows in the raw layout, ``(n, columns)`` float32 on the model's device.

        ``labels``: the target code of each row (``n`` of them); the rows then have those classes.
        Without labels, classes come out as the model learned them.
        """
        self._require_built()
        if labels is not None:
            labels = labels.to(self.device).long().reshape(-1)
            if len(labels) != n:
                raise ValueError(f"sample: {len(labels)} labels for n={n} rows")
            if self.schema.target is None:
                raise UserError(
                    f"model={self.model_name} was trained on a table without a target: rows cannot be drawn per "
                    "class (set data.target)."
                )
            bad = (labels < 0) | (labels >= self.schema.num_classes)
            if bool(bad.any()):
                raise UserError(
                    f"labels must be codes of the target's {self.schema.num_classes} classes, got "
                    f"{int(labels[bad][0])}."
                )
        was_training = self.training
        self.eval()
        try:
            if n == 0:
                return torch.zeros(0, len(self.schema), device=self.device)
            if labels is None:
                return torch.cat(
                    [
                        self.generate_rows(min(SAMPLE_CHUNK, n - start), None, generator)
                        for start in range(0, n, SAMPLE_CHUNK)
                    ]
                )
            return self.generate_labelled_rows(labels, generator)
        finally:
            self.train(was_training)

    def generate_rows(self, n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor:
        """``n`` raw-layout rows; ``labels`` given only to models with a conditional input
        (:attr:`conditions_on_labels`)."""
        raise NotImplementedError

    @property
    def conditions_on_labels(self) -> bool:
        """True for models whose generator takes the target class as input (CTGAN's conditional vector)."""
        return False

    def generate_labelled_rows(self, labels: Tensor, generator: torch.Generator | None) -> Tensor:
        """Rows with the given target codes: conditional generation where the model has it, kept
        only where the generated target agrees, and rejection sampling for the rest."""
        assert self.schema is not None
        target = self.schema.target_index
        out = torch.empty(len(labels), len(self.schema), device=self.device)
        todo = torch.arange(len(labels), device=self.device)
        budget = max(MAX_REJECTION_DRAWS * len(labels), MIN_REJECTION_BUDGET)
        drawn = 0
        if self.conditions_on_labels:
            for start in range(0, len(labels), SAMPLE_CHUNK):
                part = labels[start : start + SAMPLE_CHUNK]
                rows = self.generate_rows(len(part), part, generator)
                out[start : start + len(part)] = rows
            drawn = len(labels)
            agree = out[:, target].long() == labels
            todo = todo[~agree]
        # Rows still owed, per class: drawn unconditionally (or, conditional models, again with the
        # class) and kept when their target is the asked one.
        while len(todo):
            wanted = labels[todo]
            if drawn >= budget:
                self._refuse_classes(wanted, labels, drawn)
            rate = 1.0 / max(self.num_classes, 1)
            size = int(min(max(len(todo) / rate * 1.2, REJECTION_BATCH[0]), REJECTION_BATCH[1]))
            size = min(size, budget - drawn)
            if self.conditions_on_labels:
                # Ask for the owed classes again, repeated to fill the batch.
                ask = wanted.repeat(math.ceil(size / len(wanted)))[:size]
                rows = self.generate_rows(size, ask, generator)
            else:
                rows = self.generate_rows(size, None, generator)
            drawn += size
            got = rows[:, target].long()
            still = torch.ones(len(todo), dtype=torch.bool, device=self.device)
            for c in wanted.unique().tolist():
                slots = (wanted == c).nonzero().flatten()
                found = (got == c).nonzero().flatten()[: len(slots)]
                if len(found):
                    out[todo[slots[: len(found)]]] = rows[found]
                    still[slots[: len(found)]] = False
            todo = todo[still]
        return out

    def _refuse_classes(self, wanted: Tensor, labels: Tensor, drawn: int) -> None:
        assert self.schema is not None
        names = self.schema.class_names
        missing = {int(c): int((wanted == c).sum()) for c in wanted.unique().tolist()}
        asked = {c: int((labels == c).sum()) for c in missing}
        which = ", ".join(f"{names[c]!r} ({missing[c]} of {asked[c]} rows missing)" for c in missing)
        raise UserError(
            f"model={self.model_name} generated too few rows of class {which} in {drawn} draws: it has (nearly) not "
            f"learned that class of {self.schema.target!r}; train longer, or use model=ctgan, whose conditional "
            "vector asks for a class."
        )

    # ------------------------------------------------------------------ privacy
    def private_part(self) -> str:
        raise NotImplementedError


def _plain(value: Any) -> Any:
    """Tuples as lists, for comparing a state with its checkpointed (or JSON) copy."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
