"""Augmentation report: what synthetic images add to a (scarce or skewed) real training split.

The framework's domain classifier (network and per-step recipe of :mod:`classifier_training`) is
trained with several seeds on each arm and tested on the real test split:

* ``real``: the real training split (after ``data.subset``);
* ``real+synthetic x{r}``: plus a synthetic pool of ``r`` times as many images (drawn from the export);
* ``real+fill``: plus, per class, the synthetic images that bring it up to the largest class
  (when the real split is skewed);
* ``synthetic``: the synthetic images only, with the export's labels (the Classification Accuracy Score);
* ``real+classic``: real images with classic augmentation (``transforms.v2`` random affine and
  elastic deformation, parameters drawn per group of images, see ``GROUP``);
* ``real+classic+synthetic``: both (with the fill on a skewed split, else ``x1``);
* baselines on a skewed split (:mod:`augmentation_baselines`): ``real+oversample``,
  ``real+class_weights``, ``real+smote``.

The protocol (:class:`Protocol`), as the setups that report gains run it (Gowal et al. 2021, He et
al. 2023, Wang et al. 2023):

* **Real share.** An arm with synthetic images draws every batch from two pools: ``real_share`` of
  it from the real images, the rest from the synthetic ones (:mod:`augmentation_training`).
* **Budget.** The real-only arm trains ``classifier.epochs`` passes over the real split, at least
  ``min_steps`` steps. Every other arm trains ``max(real-only steps, the steps that give each image
  of its real pool at least the real-only arm's passes)``: at ``real_share`` 0.5 twice the steps;
  oversampling and SMOTE (one pool, larger than the real split) proportionally more. The
  synthetic-only arm trains the real-only arm's steps.
* **Selection.** The val split (real images) is scored every ``check_every`` steps (the real-only
  arm's steps / ``classifier.epochs``: once per real-only epoch); the best check's weights are kept
  and its epoch (passes over the arm's real pool) is recorded; ``patience`` stops an arm after that
  many checks without a better score.
* **Labels.** The teacher is the real-only arm's classifier of the first seed (trained on the real
  training split only, selected on the val split). ``synthetic_labels``: ``given`` (the export's
  labels), ``teacher_hard`` (the teacher's argmax), ``teacher_soft`` (its probabilities as targets).
  Synthetic images whose teacher probability for the label used (for soft labels: the largest)
  is under ``min_confidence`` are dropped before any arm is drawn; the kept share per class is
  reported. ``synthetic_weight`` multiplies the loss of synthetic examples.

Every arm reports accuracy, balanced accuracy (mean per-class recall), macro F1 and per-class
recall, as mean and standard deviation over seeds; classes with fewer than half the images of the
largest class are *rare* (``scarce_classes``: the ones a fill fills) and their mean recall is
``scarce_recall``. The Naive Augmentation Score (Ravuri & Vinyals 2019) of an arm is its accuracy
minus the real-only accuracy. The test split is only scored; model selection never sees it.

The report (``<dir>.augmentation.json``, keys):

* ``arms``: ``{arm: cell}``; a cell has ``n_train``, ``n_real``, ``n_synthetic``, ``ratio``,
  ``classic``, ``steps``, ``batch``, ``real_per_batch``, ``real_passes`` (budgeted passes over the
  arm's real pool), ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``scarce_recall`` (each
  ``{"mean", "std", "values"}`` over seeds), ``per_class_recall`` (``{"mean", "std"}`` lists),
  ``chosen_epoch`` (passes over the arm's first pool, the real one except for ``synthetic``, when the
  kept weights were reached) and ``chosen_step`` (spreads), ``stopped_early`` (seeds stopped by patience),
  and where they apply ``nas``, ``gain_over_classic``, ``with`` (the synthetic pool of
  ``real+classic+synthetic``), ``labels`` (the synthetic pool's label source), ``fill_short``
  (per class, fill images the filtered pool lacked), ``baseline`` (how the baseline was made);
* ``protocol``: ``real_share``, ``batch``, ``real_per_batch``, ``budget`` (``rule``,
  ``real_only_steps``, ``real_only_passes``, ``min_steps``, ``check_every``, ``patience``),
  ``synthetic_labels``, ``min_confidence``, ``synthetic_weight``, ``teacher`` (``source``, ``seed``,
  ``val_accuracy``), ``plan_seed``;
* ``labels``: per class of the export (``class``, ``n``, ``kept``, ``kept_share``, ``agreement``: the
  teacher's argmax equals the export's label) and ``kept_share`` overall;
* ``classifier`` (``arch``, ``recipe``, ``steps``: the real-only arm's, ``min_steps``, ``selection``),
  ``seeds``, ``ratios``, ``real_class_counts``, ``scarce_classes``, ``class_names``, ``n_real``,
  ``n_synthetic``, ``n_val``, ``n_test``, ``skipped`` (arm: why not run), ``classic``, ``seconds``.

``metrics.json`` gets ``augmentation/<arm>/<score>`` (and ``<score>_std``) for accuracy, balanced
accuracy, macro F1 and scarce recall, ``augmentation/<arm>/nas``, ``augmentation/teacher/val_accuracy``
and ``augmentation/synthetic_kept_share`` (:func:`augmentation_output.flat_augmentation`; ``+`` and
spaces in arm names become ``_``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor
from torchvision.transforms import v2

from src.metrics import augmentation_baselines as baselines
from src.metrics.augmentation_output import arm_scores, summarize
from src.metrics.augmentation_training import (
    Pool,
    budget_steps,
    class_probabilities,
    fit_arm,
    one_hot,
    real_per_batch,
)
from src.metrics.classifier_networks import resolve_arch
from src.metrics.classifier_training import TrainingRecipe, classifier_predictions
from src.utils.errors import UserError
from src.utils.logging import get_logger

log = get_logger(__name__)

# Images per draw of the classic augmentation's parameters: an elastic displacement field costs
# ~25 ms to draw at 28 px (a Gaussian blur of a random field), so one per image would triple the
# classifier's training time; affine parameters are cheap and drawn per 8 images.
GROUP = {"affine": 8, "elastic": 32}
SCARCE_BELOW = 0.5  # a class is rare (scarce) below this fraction of the largest class's count
# The real-only arm trains the recipe's epochs over the real split, at least MIN_STEPS: a 100-image
# split (1 batch per epoch) would otherwise get 10 updates.
MIN_STEPS = 200
SyntheticLabels = Literal["given", "teacher_soft", "teacher_hard"]
BUDGET_RULE = (
    "steps = max(real-only steps, ceil(real-only passes x real pool size / real images per batch)); "
    "real-only passes = real-only steps x batch / real images"
)


@dataclass(frozen=True)
class Protocol:
    """How arms with synthetic images are trained (see the module docstring)."""

    real_share: float = 0.5
    synthetic_labels: SyntheticLabels = "given"
    min_confidence: float = 0.0
    synthetic_weight: float = 1.0
    patience: int | None = None
    min_steps: int = MIN_STEPS


@dataclass
class Arm:
    """An arm's pools (the first is the real one, unless ``kind == "synthetic"``) and how to train it."""

    pools: list[Pool]
    kind: Literal["real", "mixed", "synthetic"]
    ratio: float = 0.0
    classic: bool = False
    class_weights: Tensor | None = None
    n_real: int = 0  # distinct real images (oversampling repeats them, SMOTE adds to them)
    n_synthetic: int = 0  # generated images: the synthetic pool, or SMOTE's interpolations
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return sum(len(pool) for pool in self.pools)


@dataclass(frozen=True)
class Labelled:
    """The synthetic pool as the arms use it: targets (N, K), the label used, and which images are kept."""

    targets: Tensor
    labels: Tensor
    keep: Tensor
    source: str = "given"


def classic_augmentation(size: int) -> Callable[[Tensor, torch.Generator], Tensor]:
    """Random affine + elastic deformation (torchvision ``transforms.v2``) for uint8 batches.

    v2 transforms draw from the global generator; the training loop seeds it per run (inside
    ``fork_rng``), so runs are reproducible. Elastic strength is scaled from MNIST's 28 px.
    """
    affine = v2.RandomAffine(degrees=10, translate=(0.08, 0.08), scale=(0.9, 1.1), shear=8)
    elastic = v2.ElasticTransform(alpha=34.0 * size / 28, sigma=4.0 * size / 28)

    def augment(x: Tensor, generator: torch.Generator) -> Tensor:
        x = torch.cat([affine(part) for part in x.split(GROUP["affine"])])
        return torch.cat([elastic(part) for part in x.split(GROUP["elastic"])])

    return augment


def training_steps(n_real: int, recipe: TrainingRecipe, min_steps: int = MIN_STEPS) -> int:
    """Steps of the real-only arm: ``recipe.epochs`` passes over the real split, at least ``min_steps``."""
    per_epoch = max(1, n_real // min(recipe.batch_size, n_real))
    return max(min_steps, recipe.epochs * per_epoch)


def scarce_classes(counts: Sequence[int]) -> list[int]:
    largest = max(counts)
    return [c for c, n in enumerate(counts) if n < SCARCE_BELOW * largest]


def label_synthetic(
    probabilities: Tensor, given: Tensor, source: SyntheticLabels, min_confidence: float
) -> Labelled:
    """Targets of the synthetic images from the teacher's ``probabilities`` (N, K) or the ``given`` labels.

    The confidence of an image is the teacher's probability of the label used (``given``: the export's
    label; ``teacher_hard`` and ``teacher_soft``: the teacher's argmax); under ``min_confidence`` it is
    dropped.
    """
    num_classes = probabilities.shape[1]
    if source == "given":
        labels = given.long()
        targets = one_hot(labels, num_classes)
    else:
        labels = probabilities.argmax(dim=1)
        targets = probabilities.float() if source == "teacher_soft" else one_hot(labels, num_classes)
    confidence = probabilities.gather(1, labels[:, None]).squeeze(1)
    return Labelled(targets=targets, labels=labels, keep=confidence >= min_confidence, source=source)


def labelling_summary(
    labelled: Labelled, probabilities: Tensor, given: Tensor, num_classes: int
) -> dict[str, Any]:
    """Per class of the export: images, kept images and share, the teacher's agreement with the label."""
    agree = probabilities.argmax(dim=1) == given
    rows = []
    for c in range(num_classes):
        members = given == c
        n = int(members.sum())
        kept = int((labelled.keep & members).sum())
        rows.append(
            {
                "class": c,
                "n": n,
                "kept": kept,
                "kept_share": kept / n if n else None,
                "agreement": float(agree[members].float().mean()) if n else None,
            }
        )
    return {"per_class": rows, "kept_share": float(labelled.keep.float().mean()) if len(given) else 0.0}


def _draw(n_pool: int, n: int, seed: int) -> Tensor:
    return torch.randperm(n_pool, generator=torch.Generator().manual_seed(seed))[:n]


def fill_indices(labels: Tensor, counts: Sequence[int], seed: int) -> tuple[Tensor, dict[int, int]]:
    """Indices (into ``labels``) of the images that bring each class up to the largest class, and per
    class the images missing for that (the pool had fewer)."""
    target = max(counts)
    picks, short = [], {}
    for c, have in enumerate(counts):
        need = target - have
        members = (labels == c).nonzero().flatten()
        if need > len(members):
            short[c] = need - len(members)
        if need and len(members):
            generator = torch.Generator().manual_seed(seed + c)
            picks.append(members[torch.randperm(len(members), generator=generator)[:need]])
    return (torch.cat(picks) if picks else torch.zeros(0, dtype=torch.long)), short


def plan_arms(
    real: tuple[Tensor, Tensor],
    synthetic: tuple[Tensor, Tensor],
    num_classes: int,
    ratios: Sequence[float],
    classic: bool,
    labelled: Labelled | None = None,
    synthetic_weight: float = 1.0,
    seed: int = 0,
) -> tuple[dict[str, Arm], dict[str, str]]:
    """Every arm's pools (see the module docstring) and the arms not run with the reason.

    ``labelled`` (default: the export's labels, every image kept) gives the synthetic pool's targets
    and the images the teacher keeps; the ``synthetic`` arm always uses every image with its given label.
    """
    x_real, y_real = real
    x_syn, y_syn = synthetic
    n_real = len(x_real)
    labelled = labelled or Labelled(
        one_hot(y_syn, num_classes), y_syn.long(), torch.ones(len(y_syn), dtype=torch.bool)
    )
    kept = labelled.keep.nonzero().flatten()
    pool_x, pool_t, pool_y = x_syn[kept], labelled.targets[kept], labelled.labels[kept]
    filtered = " (after min_confidence)" if len(kept) < len(x_syn) else ""
    counts = torch.bincount(y_real, minlength=num_classes).tolist()
    real_pool = Pool(x_real, one_hot(y_real, num_classes))
    labels_info = {"labels": labelled.source}

    def mixed(pick: Tensor, ratio: float, **info: Any) -> Arm:
        pool = Pool(pool_x[pick], pool_t[pick], synthetic_weight)
        return Arm(
            [real_pool, pool],
            "mixed",
            ratio,
            n_real=n_real,
            n_synthetic=len(pool),
            info={**labels_info, **info},
        )

    arms: dict[str, Arm] = {"real": Arm([real_pool], "real", n_real=n_real)}
    skipped: dict[str, str] = {}
    for ratio in ratios:
        name = f"real+synthetic x{ratio:g}"
        n = round(ratio * n_real)
        if n > len(pool_x):
            skipped[name] = f"needs {n} synthetic images, the export has {len(pool_x)}{filtered}"
            continue
        arms[name] = mixed(_draw(len(pool_x), n, seed), ratio)
    if max(counts) == min(counts):
        skipped["real+fill"] = "the real split is already balanced"
    else:
        pick, short = fill_indices(pool_y, counts, seed)
        if len(pick):
            info = {"fill_short": short} if short else {}
            arms["real+fill"] = mixed(pick, len(pick) / n_real, **info)
        else:
            skipped["real+fill"] = f"the export has no synthetic image of the classes to fill{filtered}"
    arms["synthetic"] = Arm(
        [Pool(x_syn, one_hot(y_syn, num_classes))],
        "synthetic",
        math.inf,
        n_synthetic=len(x_syn),
        info={"labels": "given"},
    )
    if classic:
        arms["real+classic"] = Arm([real_pool], "real", classic=True, n_real=n_real)
        extra = "real+fill" if "real+fill" in arms else "real+synthetic x1"
        if extra in arms:
            arms["real+classic+synthetic"] = Arm(
                arms[extra].pools,
                "mixed",
                arms[extra].ratio,
                classic=True,
                n_real=n_real,
                n_synthetic=arms[extra].n_synthetic,
                info={**labels_info, "with": extra},
            )
        else:
            skipped["real+classic+synthetic"] = f"no {extra} arm"
    arms.update(_baselines(real, num_classes, counts, seed, skipped))
    return arms, skipped


def _baselines(
    real: tuple[Tensor, Tensor], num_classes: int, counts: list[int], seed: int, skipped: dict[str, str]
) -> dict[str, Arm]:
    names = ("real+oversample", "real+class_weights", "real+smote")
    present = [n for n in counts if n]
    if max(present) == min(present):
        for name in names:
            skipped[name] = "the real split is balanced: the same training as real"
        return {}
    x, y = real
    n_real = len(x)
    weights = baselines.class_weights(y, num_classes)
    arms = {
        "real+oversample": Arm(
            [Pool(*_with_targets(baselines.oversample(x, y, num_classes, seed), num_classes))],
            "real",
            n_real=n_real,
            info={"baseline": "rare-class real images repeated up to the largest class"},
        ),
        "real+class_weights": Arm(
            [Pool(x, one_hot(y, num_classes))],
            "real",
            class_weights=weights,
            n_real=n_real,
            info={"baseline": "loss weighted by n / (K * n_c)", "class_weights": weights.tolist()},
        ),
    }
    k = baselines.smote_neighbours(y, num_classes)
    if k < 1:
        skipped["real+smote"] = "SMOTE needs at least 2 real images in every class"
        return arms
    x_res, y_res = baselines.smote(x, y, num_classes, seed)
    arms["real+smote"] = Arm(
        [Pool(x_res, one_hot(y_res, num_classes))],
        "real",
        n_real=n_real,
        n_synthetic=len(x_res) - n_real,
        info={"baseline": f"imbalanced-learn SMOTE on flattened pixels, k_neighbors={k}"},
    )
    return arms


def _with_targets(data: tuple[Tensor, Tensor], num_classes: int) -> tuple[Tensor, Tensor]:
    return data[0], one_hot(data[1], num_classes)


def arm_schedule(arm: Arm, batch: int, real_share: float, real_steps: int, n_real: int) -> dict[str, Any]:
    """Images per batch from each pool and the arm's steps under the budget rule (module docstring)."""
    if arm.kind == "synthetic":
        return {"counts": [batch], "steps": real_steps, "real_per_batch": 0, "real_passes": None}
    per_batch = real_per_batch(batch, real_share) if arm.kind == "mixed" else batch
    counts = [per_batch, batch - per_batch] if arm.kind == "mixed" else [batch]
    steps = budget_steps(real_steps, batch, n_real, per_batch, len(arm.pools[0]))
    return {
        "counts": counts,
        "steps": steps,
        "real_per_batch": per_batch,
        "real_passes": steps * per_batch / len(arm.pools[0]),
    }


def augmentation_report(
    real: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    synthetic: tuple[Tensor, Tensor],
    num_classes: int,
    class_names: Sequence[str],
    recipe: TrainingRecipe,
    arch: str = "auto",
    seeds: Sequence[int] = (0, 1, 2),
    ratios: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    classic: bool = True,
    device: torch.device | str = "cpu",
    protocol: Protocol = Protocol(),
) -> dict[str, Any]:
    """Trains every arm with every seed; returns the report (keys: see the module docstring)."""
    _check_inputs(real, synthetic, num_classes, seeds)
    real = (real[0].cpu(), real[1].cpu())
    synthetic = (synthetic[0].cpu(), synthetic[1].cpu())
    val = (val[0].cpu(), val[1].cpu())
    device = torch.device(device)
    arch_name = resolve_arch(arch, int(real[0].shape[-1]))
    n_real = len(real[0])
    counts = torch.bincount(real[1], minlength=num_classes).tolist()
    scarce = scarce_classes(counts)
    batch = min(recipe.batch_size, n_real)
    real_steps = training_steps(n_real, recipe, protocol.min_steps)
    check_every = max(1, real_steps // recipe.epochs)
    augment = classic_augmentation(int(real[0].shape[-1]))
    started = time.perf_counter()

    def train(arm: Arm, seed: int) -> tuple[Any, dict[str, Any]]:
        schedule = arm_schedule(arm, batch, protocol.real_share, real_steps, n_real)
        network, record = fit_arm(
            arm.pools,
            schedule["counts"],
            schedule["steps"],
            arch_name,
            num_classes,
            TrainingRecipe(**{**asdict(recipe), "seed": seed}),
            device,
            val,
            check_every,
            protocol.patience,
            arm.class_weights,
            augment if arm.classic else None,
        )
        predicted = classifier_predictions(network, test[0], device)
        scores = arm_scores(predicted, test[1].cpu(), num_classes, scarce)
        record["chosen_epoch"] = record["best_step"] * schedule["counts"][0] / len(arm.pools[0])
        return network, {**scores, **record, "schedule": schedule}

    real_arm = Arm([Pool(real[0], one_hot(real[1], num_classes))], "real", n_real=n_real)
    runs: dict[str, list[dict[str, Any]]] = {"real": []}
    teacher = None
    for index, seed in enumerate(seeds):
        log.info(f"augmentation report: real, seed {seed} ({n_real} training images)")
        network, run = train(real_arm, seed)
        runs["real"].append(run)
        if index == 0:
            teacher = network
    probabilities = class_probabilities(teacher, synthetic[0], device)
    labelled = label_synthetic(
        probabilities, synthetic[1], protocol.synthetic_labels, protocol.min_confidence
    )
    arms, skipped = plan_arms(
        real, synthetic, num_classes, ratios, classic, labelled, protocol.synthetic_weight
    )
    todo = [(name, seed) for name in arms if name != "real" for seed in seeds]
    for done, (name, seed) in enumerate(todo, 1):
        log.info(
            f"augmentation report [{done}/{len(todo)}] {name}, seed {seed}: {arms[name].n_train} training "
            f"images ({time.perf_counter() - started:.0f} s so far)"
        )
        runs.setdefault(name, []).append(train(arms[name], seed)[1])
    cells = {name: summarize(arm, runs[name], num_classes) for name, arm in arms.items()}
    _gains(cells)
    teacher_val = runs["real"][0]["best_val_accuracy"]
    return {
        "arms": cells,
        "skipped": skipped,
        "seeds": list(seeds),
        "ratios": list(ratios),
        "real_class_counts": counts,
        "scarce_classes": scarce,
        "class_names": list(class_names),
        "n_real": n_real,
        "n_synthetic": len(synthetic[0]),
        "n_test": len(test[1]),
        "n_val": len(val[0]),
        "protocol": {
            "real_share": protocol.real_share,
            "batch": batch,
            "real_per_batch": real_per_batch(batch, protocol.real_share),
            "budget": {
                "rule": BUDGET_RULE,
                "real_only_steps": real_steps,
                "real_only_passes": real_steps * batch / n_real,
                "min_steps": protocol.min_steps,
                "check_every": check_every,
                "patience": protocol.patience,
            },
            "synthetic_labels": protocol.synthetic_labels,
            "min_confidence": protocol.min_confidence,
            "synthetic_weight": protocol.synthetic_weight,
            "teacher": {
                "source": "the real arm's classifier of the first seed (real training split only, "
                "weights chosen on the val split)",
                "seed": seeds[0],
                "val_accuracy": teacher_val,
            },
            "plan_seed": 0,
        },
        "labels": labelling_summary(labelled, probabilities, synthetic[1], num_classes),
        "classifier": {
            "arch": arch_name,
            "recipe": asdict(recipe),
            "steps": real_steps,
            "min_steps": protocol.min_steps,
            "selection": f"best val accuracy of checks every {check_every} steps",
        },
        "classic": {
            "transforms": "RandomAffine(10 deg, 8% shift, 0.9-1.1 scale, 8 deg shear) + ElasticTransform",
            "images_per_draw": GROUP,
        },
        "seconds": time.perf_counter() - started,
    }


def _check_inputs(
    real: tuple[Tensor, Tensor], synthetic: tuple[Tensor, Tensor], num_classes: int, seeds: Sequence[int]
) -> None:
    if num_classes < 2:
        raise UserError("the augmentation report needs labelled data (at least 2 classes).")
    if len(synthetic[0]) == 0:
        raise UserError("the export holds no synthetic images: the augmentation report needs some.")
    if tuple(synthetic[0].shape[1:]) != tuple(real[0].shape[1:]):
        raise UserError(
            f"the synthetic images are {tuple(synthetic[0].shape[1:])} (C, H, W) but the real ones "
            f"{tuple(real[0].shape[1:])}: evaluate against the data the model was trained on."
        )
    if not seeds:
        raise UserError(
            "augmentation.seeds=[] trains nothing: give at least one seed (3 or more for a spread)."
        )


def _gains(cells: dict[str, dict[str, Any]]) -> None:
    """NAS (accuracy gained over real only) of every arm trained on real images, and classic's gain."""
    real_accuracy = cells["real"]["accuracy"]["mean"]
    for name, cell in cells.items():
        if name not in ("real", "synthetic"):
            # Naive Augmentation Score (Ravuri & Vinyals 2019): accuracy gained over the real-only arm.
            cell["nas"] = cell["accuracy"]["mean"] - real_accuracy
    if "real+classic+synthetic" in cells:
        cells["real+classic+synthetic"]["gain_over_classic"] = (
            cells["real+classic+synthetic"]["accuracy"]["mean"] - cells["real+classic"]["accuracy"]["mean"]
        )
