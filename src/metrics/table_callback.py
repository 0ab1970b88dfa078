"""The Lightning callback behind ``metrics=table``: scores generated rows during training and test.

Every ``every_n_epochs`` validation epochs it draws ``n_fake_val`` rows from ``pl_module.sample``
(raw layout, :mod:`src.utils.tables`), decodes them with the data's schema and scores them against
the val split (``val/quality``, ``val/detection_auc``, ``val/dcr``, ...; :mod:`src.metrics.tabular`);
at test ``n_fake_test`` rows against the test split, plus the utility scores (``test/tstr_*`` beside
``test/trtr_*``). Each stage's protocol holds the same scores for as many held-out real rows
(``reference/real/<score>``: test rows when scoring val, val rows when scoring test) and the verdict
(:data:`src.metrics.verdict.TABLE_RULES`).

Multi-process runs (DDP) give the numbers of a single process, as the image callback does: rows
come in fixed-size chunks, chunk ``i`` from its own seed, rank ``r`` draws chunks ``r, r + W, ...``;
the chunks are gathered on every rank in chunk order, rank 0 scores them and broadcasts the scores.

Outside Lightning, :meth:`TableMetrics.score_frame` scores an exported table and
:meth:`TableMetrics.audit_frame` runs the DCR-based membership audit on it.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch import Tensor

from src.data.base import GenerativeDataModule
from src.metrics.membership import FPR_LEVELS, roc_summary, unmeasured_levels
from src.metrics.score_callback import ScoreCallback
from src.metrics.scoring import REFERENCE_SPLIT, add_reference, chunk_sizes, sample_chunk
from src.metrics.tabular import (
    KS_DECIMALS,
    PAIR_BINS,
    DetectionClassifier,
    TableScoreOptions,
    UtilityClassifier,
    gower_nearest,
    raw_values,
    score_table,
    table_score_names,
)
from src.metrics.verdict import TABLE_RULES
from src.utils.errors import UserError
from src.utils.logging import get_logger
from src.utils.tables import TableSchema
from src.utils.types import PositiveInt

log = get_logger(__name__)

# Below this many real rows in the scored split, the scores vary much from one draw to the next.
MIN_REAL_ROWS = 100
QUALITY_PROTOCOL = (
    "SDMetrics single-table quality report definitions, own numpy code: column_shapes = mean of "
    f"KSComplement (continuous, missing dropped, values rounded to {KS_DECIMALS} decimals) / TVComplement "
    "(discrete, missing dropped); column_pair_trends = mean of CorrelationSimilarity (Pearson, continuous "
    f"pairs) / ContingencySimilarity (other pairs; a continuous column in {PAIR_BINS} equal-width bins of "
    "each frame's own range; missing values a category); quality = their mean"
)
GOWER = (
    "Gower distance: mean over columns of |a - b| / (high - low) (continuous, the schema's range; "
    "one value missing: 1, both: 0) and 0/1 category mismatch (discrete)"
)


class TableScorer:
    """Scores decoded rows against the splits of one table data module; keeps the real frames and
    the real-vs-real references in memory."""

    def __init__(self, options: TableScoreOptions | None = None) -> None:
        self.options = options or TableScoreOptions()
        self._frames: dict[tuple[str, str], pd.DataFrame] = {}
        self._references: dict[tuple[str, str, int, bool], tuple[dict[str, float], dict[str, Any]]] = {}

    # ------------------------------------------------------------------ real side
    def frame(self, datamodule: GenerativeDataModule, split: str) -> pd.DataFrame:
        """The decoded rows of a real split (cached by the split's fingerprint)."""
        key = (split, datamodule.fingerprint(split))
        if key not in self._frames:
            getter = getattr(datamodule, "frame", None)
            self._frames[key] = (
                getter(split)
                if callable(getter)
                else schema_of(datamodule).decode(datamodule.split(split)[0])
            )
        return self._frames[key]

    def utility_on(self, datamodule: GenerativeDataModule, split: str) -> bool:
        """Whether scoring ``split`` includes TSTR: at test, with a target, when enabled."""
        return self.options.tstr and split == "test" and schema_of(datamodule).target is not None

    # ------------------------------------------------------------------ scores
    def score(
        self,
        synthetic: pd.DataFrame,
        datamodule: GenerativeDataModule,
        split: str,
        with_real_utility: bool = True,
    ) -> dict[str, float]:
        """Every enabled score of ``synthetic`` (decoded rows) against the real ``split``."""
        if len(synthetic) < 2:
            raise UserError(f"{len(synthetic)} generated rows are too few to score: use at least 2.")
        return score_table(
            synthetic,
            self.frame(datamodule, split),
            schema_of(datamodule),
            self.options,
            train=self.frame(datamodule, "train"),
            test=self.frame(datamodule, "test") if self.utility_on(datamodule, split) else None,
            with_real_utility=with_real_utility,
        )

    def reference(
        self, datamodule: GenerativeDataModule, split: str, n_fake: int
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Real against real: as many held-out real rows as generated ones (at most the held-out
        split: val for test, test for val), scored against ``split`` exactly as generated rows are
        (TSTR then trains on them). Empty, with the reason, when the held-out split is too small."""
        other = REFERENCE_SPLIT.get(split)
        utility = self.utility_on(datamodule, split)
        key = (split, datamodule.fingerprint(split), n_fake, utility)
        if key in self._references:
            return self._references[key]
        if other is None:
            self._references[key] = (
                {},
                {"split": None, "n": 0, "reason": f"no held-out split beside {split}"},
            )
            return self._references[key]
        held_out = self.frame(datamodule, other)
        n = min(n_fake, len(held_out))
        about: dict[str, Any] = {
            "split": other,
            "n": n,
            "rows": f"{n} of the {other} split, drawn with seed {self.options.seed}",
        }
        if n < 2:
            about["reason"] = f"the {other} split has {len(held_out)} rows: too few for a reference"
            self._references[key] = ({}, about)
            return self._references[key]
        pick = np.sort(np.random.default_rng(self.options.seed).permutation(len(held_out))[:n])
        rows = held_out.iloc[pick].reset_index(drop=True)
        # The train-on-real baseline (trtr_*) is the generated rows' own entry; here it would repeat it.
        self._references[key] = (self.score(rows, datamodule, split, with_real_utility=False), about)
        return self._references[key]

    def protocol(
        self,
        datamodule: GenerativeDataModule,
        split: str,
        n_fake: int,
        scores: dict[str, float] | None = None,
        **generation: Any,
    ) -> dict[str, Any]:
        """How the scores of ``split`` were computed, the real-vs-real reference, the verdict and the
        warnings that ``scores`` (when given) call for."""
        opts = self.options
        schema = schema_of(datamodule)
        real = self.frame(datamodule, split)
        n_train = len(self.frame(datamodule, "train"))
        protocol: dict[str, Any] = {
            "protocol": "table scores (src/metrics/tabular.py)",
            "unit": "rows",
            "dataset": datamodule.name,
            "split": split,
            "split_fingerprint": datamodule.fingerprint(split),
            "n_real": len(real),
            "n_fake": n_fake,
            "n_train": n_train,
            "seed": opts.seed,
            **generation,
            "scores": self.names(datamodule, split),
            "quality": QUALITY_PROTOCOL,
        }
        if opts.detection:
            protocol["detection"] = {
                "classifier": opts.detection_classifier,
                "folds": opts.detection_folds,
                "n_per_class": min(n_fake, len(real)),
                "features": "continuous standardised on the real rows (+ missing flag), discrete one-hot",
                "seed": opts.seed,
            }
        if opts.dcr:
            protocol["dcr"] = {
                "distance": GOWER,
                "n_train_reference": min(opts.n_train_reference, n_train),
                "closer_share_rows_per_side": min(n_train, len(real)),
                "closer_share_holdout": f"the {split} split",
                "ties": "count half",
            }
        if self.utility_on(datamodule, split):
            protocol["tstr"] = {
                "classifier": opts.tstr_classifier,
                "target": schema.target,
                "tested_on": f"the {len(self.frame(datamodule, 'test'))} rows of the test split",
                "trtr_rows": f"{min(n_fake, n_train)} training rows drawn with seed {opts.seed}",
                "roc_auc": "one-vs-rest, macro over the test rows' classes",
            }
        protocol["warnings"] = self.warnings(split, len(real))
        if scores:
            add_reference(
                protocol, scores, self.reference(datamodule, split, n_fake), TABLE_RULES, unit="rows"
            )
        return protocol

    def warnings(self, split: str, n_real: int) -> list[str]:
        if n_real >= MIN_REAL_ROWS:
            return []
        return [
            f"the real {split} split has {n_real} rows (< {MIN_REAL_ROWS}): quality, detection and DCR vary much "
            f"from one draw to the next at so few; read them beside their real-vs-real reference, or give the "
            f"{split} split more rows (data.val_fraction / data.test_fraction)."
        ]

    def names(self, datamodule: GenerativeDataModule, split: str) -> list[str]:
        return table_score_names(self.options, getattr(datamodule, "schema", None), split)


def schema_of(datamodule: Any) -> TableSchema:
    schema = getattr(datamodule, "schema", None)
    if not isinstance(schema, TableSchema):
        raise UserError(
            f"metrics=table scores tables, but data={getattr(datamodule, 'name', '?')} holds "
            f"{getattr(datamodule, 'kind', 'other')} data: use metrics=domain (images) or metrics=none."
        )
    return schema


class TableMetrics(ScoreCallback):
    """Table scores with their protocol, real-vs-real reference and verdict (``metrics=table``).

    Args:
        every_n_epochs: score at the end of every n-th validation epoch.
        n_fake_val, n_fake_test: generated rows scored at validation and at test (None: as many as
            the real split holds).
        chunk_size: rows per seeded chunk (part of the protocol: changing it changes the rows).
        seed: evaluation seed (rows, subsamples, folds, classifiers).
        detection, detection_classifier, detection_folds: the classifier two-sample test.
        dcr, n_train_reference: distance to closest record (and the closer-to-train share) against at
            most this many training rows.
        tstr, tstr_classifier: at test, train-on-synthetic test-on-real utility beside train-on-real
            (``hist_gradient_boosting`` | ``logistic``); needs a target column.
        audit, audit_n: at test, the DCR-based membership audit (``audit/closest_synthetic/...``) with
            ``audit_n`` training rows against as many test rows.
    """

    def __init__(
        self,
        *,
        every_n_epochs: PositiveInt = 1,
        n_fake_val: PositiveInt | None = None,
        n_fake_test: PositiveInt | None = None,
        chunk_size: PositiveInt = 1000,
        seed: int = 0,
        detection: bool = True,
        detection_classifier: DetectionClassifier = "logistic",
        detection_folds: PositiveInt = 3,
        dcr: bool = True,
        n_train_reference: PositiveInt = 10_000,
        tstr: bool = True,
        tstr_classifier: UtilityClassifier = "hist_gradient_boosting",
        audit: bool = False,
        audit_n: PositiveInt = 500,
    ) -> None:
        super().__init__(every_n_epochs)
        if detection_folds < 2:
            raise UserError(
                f"metrics.detection_folds={detection_folds}: cross-validation needs at least 2 folds."
            )
        self.n_fake = {"val": n_fake_val, "test": n_fake_test}
        self.chunk_size = chunk_size
        self.audit = audit
        self.audit_n = audit_n
        self.options = TableScoreOptions(
            detection=detection,
            detection_classifier=detection_classifier,
            detection_folds=detection_folds,
            dcr=dcr,
            n_train_reference=n_train_reference,
            tstr=tstr,
            tstr_classifier=tstr_classifier,
            seed=seed,
        )
        self.scorer = TableScorer(self.options)

    # ------------------------------------------------------------------ checks before the run
    def prepare(self, datamodule: GenerativeDataModule, device: torch.device | str | None = None) -> None:
        """Checks the data against the options (the entry points call it before the Trainer starts)."""
        schema = schema_of(datamodule)
        for split in ("val", "test"):
            n = len(datamodule.split(split)[0])
            if n < 2:
                raise UserError(
                    f"data={datamodule.name}: the {split} split has {n} rows; table scores need at least 2: "
                    "give the table more rows or raise data.val_fraction / data.test_fraction."
                )
        if self.options.tstr and schema.target is None:
            log.info("metrics=table: no data.target, so no train-on-synthetic (TSTR) utility scores")

    def score_names(self, datamodule: GenerativeDataModule) -> list[str]:
        """The scores logged at validation (without the ``val/`` prefix)."""
        return self.scorer.names(datamodule, "val")

    def fake_count(self, stage: str, n_real: int) -> int:
        """Rows scored at ``stage``: ``metrics.n_fake_<stage>``, or as many as the real split holds."""
        return int(self.n_fake[stage] or max(2, n_real))

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datamodule = self._datamodule(trainer)
        schema_of(datamodule)
        if stage == "fit":
            self._check_monitors(trainer, datamodule)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rows = self.evaluate(trainer, pl_module, "test", keep_rows=self.audit)
        if self.audit:
            result = self.audit_frame(rows, trainer.datamodule) if trainer.global_rank == 0 else None
            self._publish(trainer, pl_module, result, "audit")

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, trainer: pl.Trainer, pl_module: Any, stage: str, keep_rows: bool = False) -> Any:
        """Draws, gathers and scores the rows of ``stage``; logs the scores and records the protocol.
        Returns the scores, or with ``keep_rows`` the decoded rows (rank 0; ``None`` elsewhere)."""
        datamodule: GenerativeDataModule = trainer.datamodule
        schema = schema_of(datamodule)
        n = self.fake_count(stage, len(datamodule.split(stage)[0]))
        raw = self._draw_and_gather(trainer, pl_module, chunk_sizes(n, self.chunk_size), len(schema))
        result: tuple[dict[str, float], dict[str, Any]] | None = None
        frame = None
        if trainer.global_rank == 0:
            frame = schema.decode(raw.double().numpy())
            result = self._score(frame, datamodule, stage)
        scores = self._publish(trainer, pl_module, result, stage, prefix=f"{stage}/")
        return frame if keep_rows else scores

    def _score(
        self, frame: pd.DataFrame, datamodule: GenerativeDataModule, stage: str
    ) -> tuple[dict[str, float], dict[str, Any]]:
        scores = self.scorer.score(frame, datamodule, stage)
        protocol = self.scorer.protocol(
            datamodule,
            stage,
            len(frame),
            scores,
            chunk_size=self.chunk_size,
            chunk_seeds="SeedSequence([seed, chunk index])",
        )
        protocol["n_fake_rule"] = (
            f"metrics.n_fake_{stage}" if self.n_fake[stage] else "as many as the real split"
        )
        self._warn_once(log, stage, protocol["warnings"])
        return scores, protocol

    def _draw_and_gather(self, trainer: pl.Trainer, pl_module: Any, sizes: list[int], width: int) -> Tensor:
        """The raw rows of every chunk, drawn across ranks, in chunk order on every rank (CPU)."""
        world, rank = trainer.world_size, trainer.global_rank
        device = pl_module.device
        slots = math.ceil(len(sizes) / world)
        buffer = torch.zeros(slots, max(sizes), width, device=device)
        for slot, index in enumerate(range(rank, len(sizes), world)):
            rows = sample_chunk(pl_module.sample, index, sizes[index], self.options.seed, device)
            buffer[slot, : sizes[index]] = rows.float()
        # Ranks with fewer chunks send zero padding; it is cut away here.
        gathered = trainer.strategy.all_gather(buffer) if world > 1 else buffer.unsqueeze(0)
        return torch.cat([gathered[i % world, i // world, :size] for i, size in enumerate(sizes)]).cpu()

    # ------------------------------------------------------------------ outside the training loop
    def score_frame(
        self,
        frame: pd.DataFrame,
        datamodule: GenerativeDataModule,
        split: str = "test",
        class_balance: bool = True,
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Scores decoded rows (an exported table) against a real split, with reference and verdict.

        ``class_balance=False`` for rows whose classes were asked for (a fill, a label plan): their
        class frequencies are the request's, not the model's, so ``target_tv`` is left out."""
        scores = self.scorer.score(frame, datamodule, split)
        if not class_balance:
            scores.pop("target_tv", None)
        protocol = self.scorer.protocol(datamodule, split, len(frame), scores, rows="given")
        for warning in protocol["warnings"]:
            log.warning(f"{split} scores: {warning}")
        return scores, protocol

    def audit_frame(
        self,
        frame: pd.DataFrame,
        datamodule: GenerativeDataModule,
        n: int | None = None,
        seed: int | None = None,
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """DCR-based black-box membership audit of decoded rows: ``audit_n`` training rows (members)
        and as many test rows (non-members), each scored by minus its Gower distance to the closest
        generated row; ROC AUC and TPR at low FPR (:func:`src.metrics.membership.roc_summary`).
        ``n`` and ``seed`` override ``audit_n`` and the evaluation seed (``src.audit n=... seed=...``)."""
        schema = schema_of(datamodule)
        n = self.audit_n if n is None else n
        seed = self.options.seed if seed is None else seed
        train, test = self.scorer.frame(datamodule, "train"), self.scorer.frame(datamodule, "test")
        count = min(n, len(train), len(test))
        if count < 1 or len(frame) < 1:
            raise UserError("the membership audit needs training, test and generated rows: none to compare.")
        rng = np.random.default_rng(seed)
        synthetic = raw_values(frame, schema)

        def attack(rows: pd.DataFrame) -> Tensor:
            pick = np.sort(rng.permutation(len(rows))[:count])
            return -torch.from_numpy(gower_nearest(raw_values(rows.iloc[pick], schema), synthetic, schema))

        summary = roc_summary(attack(train), attack(test))
        scores = {f"audit/closest_synthetic/{k}": v for k, v in summary.items()}
        protocol = {
            "members": "train split",
            "nonmembers": "test split",
            "n_members": count,
            "n_nonmembers": count,
            "n_synthetic": len(frame),
            "seed": seed,
            "dataset": datamodule.name,
            "train_fingerprint": datamodule.fingerprint("train"),
            "attacks": {
                "closest_synthetic": f"black-box: minus the {GOWER.split(':')[0]} to the closest synthetic row"
            },
            "distance": GOWER,
            "fpr_levels": FPR_LEVELS,
            "min_measurable_fpr": 1 / count,
            "unmeasured": unmeasured_levels(count),
            "reference": "GAN-Leaks full black-box (Chen et al. 2020) on the Gower distance; Carlini et al. 2022 (TPR at low FPR)",
        }
        return scores, protocol
