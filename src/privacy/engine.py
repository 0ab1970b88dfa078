"""DP-SGD for the framework's models with Opacus, a budget that holds, and the record of the guarantee.

``privacy=dp`` trains with differentially private stochastic gradient descent (Abadi et al. 2016)
as Opacus implements it: per-example gradients (``GradSampleModule`` hooks), each clipped to
``max_grad_norm`` and summed, Gaussian noise of standard deviation ``noise_multiplier *
max_grad_norm`` added (``DPOptimizer``), batches Poisson-sampled at rate ``q = batch_size / n``,
and the privacy loss of every noisy update composed by Opacus' accountant (``rdp`` or ``prv``).
The guarantee is (epsilon, delta)-DP for add/remove-one-example adjacency over the training split.

What is private, and why the accounting is correct
    * VAE / cVAE: the whole model is trained with DP-SGD. Every parameter is updated only
      through the noisy, clipped gradient, so one accountant step per optimizer update covers it.
    * GANs: only the discriminator touches training data. Its updates are DP-SGD steps, each
      charged to the accountant exactly once. The generator's loss is a function of the
      discriminator's (already private) weights and of fresh noise, never of a training image;
      its weights are therefore a post-processing of the sequence of private discriminators and
      cost nothing more. Opacus' own DCGAN example charged each discriminator update twice (one
      step for the real and one for the fake half, Opacus issue #418); here real and generated
      samples go through the discriminator as one batch with one row each, every row's gradient
      is clipped, and the number of generated rows is fixed (the expected batch size), so adding
      or removing one training example changes the summed gradient by at most ``max_grad_norm``:
      one subsampled Gaussian mechanism per discriminator update, one accountant step.
    * Tables (``src/models/tabular``): TVAE is private as a whole, CTGAN through its discriminator,
      as above. Their networks are sized from the training split, so ``plan`` builds them (then
      checks and hooks them) knowing the run is private: the continuous columns are scaled by the
      ranges the schema states instead of a mixture fitted to the rows, and CTGAN drops what reads
      the training rows outside the Poisson batches (its conditional vector's category frequencies
      and training-by-sampling) and packs one row per discriminator input.
    * Poisson sampling: the training loader draws each batch by including every example
      independently with probability ``q`` (``TensorBatchLoader(sample_rate=q)``), which is the
      sampling the accountant's amplification analysis assumes; an empty batch is a noise-only
      update and is charged like any other.

What is refused, before any work (``Error:``)
    batch norm in a private network (an example's output depends on the others in its batch, so
    it has no gradient of its own); spectral norm (its power-iteration state is not supported by
    Opacus' per-example gradients); gradient penalties (WGAN-GP, R1: their input-gradient terms
    would need per-example double back-propagation); learned parameters outside the private
    networks (a learned Gaussian ``sigma``); ``trainer.gradient_clip_val`` (clipping is
    per-example here: ``privacy.max_grad_norm``); gradient accumulation; DDP (the noise must be
    added once across processes); mixed precision and ``torch.compile``; and a schedule whose
    planned number of private updates would spend more than ``target_epsilon``.

What is not covered
    The validation and test splits (validation scores select ``best.ckpt``), the domain
    classifier of the metrics (trained on the same training split without privacy), pseudo
    labels it assigns, and the hyperparameter search: each uses the data outside this mechanism.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig
from torch import nn

from src.data.base import GenerativeDataModule
from src.models.base import PRIVACY_KEY, GenerativeModule
from src.utils.errors import UserError
from src.utils.logging import get_logger
from src.utils.types import Fraction, PositiveFloat

log = get_logger(__name__)

Accountant = Literal["rdp", "prv"]
MECHANISM = (
    "DP-SGD (Opacus): per-example clipping, Gaussian noise, Poisson sampling; add/remove-one adjacency"
)


def planned_updates(
    batches_per_epoch: int,
    trainer_cfg: DictConfig | dict[str, Any],
    updates_per_step: int = 1,
) -> int:
    """Private updates a run will make: the schedule of ``trainer`` (epochs, steps, batch limits,
    fast_dev_run) over ``batches_per_epoch`` Poisson batches; ``updates_per_step`` private updates
    per ``trainer.global_step`` (a GAN's ``n_critic``)."""
    get = trainer_cfg.get
    max_epochs, max_steps = get("max_epochs"), get("max_steps", -1) or -1
    limit = get("limit_train_batches")
    fast = get("fast_dev_run") or 0
    batches = batches_per_epoch
    if fast:
        # Lightning's fast_dev_run=n: n batches, one epoch, n steps.
        n = 1 if fast is True else int(fast)
        batches, max_epochs, max_steps, limit = min(batches, n), 1, n, None
    if isinstance(limit, int) and not isinstance(limit, bool):
        batches = min(batches, limit)
    elif isinstance(limit, float):
        batches = int(batches * limit)
    if max_epochs is None and max_steps == -1:
        max_epochs = 1000  # Lightning's default when neither is set
    plans = []
    if max_epochs is not None and max_epochs >= 0:
        plans.append(max_epochs * batches)
    if max_steps > 0:
        plans.append(max_steps * updates_per_step)
    if not plans:
        raise UserError(
            "privacy=dp needs a finite schedule to budget: set trainer.max_epochs or trainer.max_steps."
        )
    return min(plans)


class DifferentialPrivacy(Callback):
    """``privacy=dp``: trains the model's private part with DP-SGD within ``target_epsilon``.

    Args:
        target_epsilon: the budget; a run whose planned schedule would exceed it does not start.
        delta: the delta of the guarantee; ``None``: ``1 / (10 n)`` for ``n`` training examples.
        max_grad_norm: per-example clipping norm ``C``.
        noise_multiplier: noise standard deviation over ``C``; ``None``: the smallest value (to
            ``epsilon_tolerance``) that keeps the planned schedule within ``target_epsilon``,
            solved with Opacus' accountant (``opacus.accountants.utils.get_noise_multiplier``).
        accountant: Opacus accountant, ``rdp`` (Renyi DP, Mironov 2017) or ``prv`` (privacy loss
            random variables, Gopi et al. 2021; tighter, slower).
        norm: the normalisation that the model configs give private networks (``model.norm`` of
            VAEs, ``model.d_norm`` of GANs): ``layer`` or ``none``; batch norm is refused.
        epsilon_tolerance: precision of the solved noise multiplier, in epsilon.
    """

    def __init__(
        self,
        *,
        target_epsilon: PositiveFloat = 10.0,
        delta: Fraction | None = None,
        max_grad_norm: PositiveFloat = 1.0,
        noise_multiplier: PositiveFloat | None = None,
        accountant: Accountant = "rdp",
        norm: Literal["layer", "none"] = "layer",
        epsilon_tolerance: PositiveFloat = 0.01,
    ) -> None:
        super().__init__()
        from opacus.accountants import create_accountant

        self.target_epsilon = float(target_epsilon)
        self.delta_option = delta
        self.max_grad_norm = float(max_grad_norm)
        self.noise_option = noise_multiplier
        self.accountant_name = accountant
        self.norm = norm
        self.epsilon_tolerance = float(epsilon_tolerance)
        self.accountant = create_accountant(mechanism=accountant)
        self.model: GenerativeModule | None = None
        self.n: int | None = None
        self.delta: float | None = None
        self.sample_rate: float | None = None
        self.expected_batch_size: int | None = None
        self.noise_multiplier: float | None = None
        self.planned_steps: int | None = None
        self._hooks: list[Any] = []
        self._batch_size: int | None = None
        self._optimizers: list[Any] = []
        self._unbuilt: GenerativeModule | None = None

    # ------------------------------------------------------------------ before any work
    def check(self, model: GenerativeModule, trainer_cfg: DictConfig, hardware: Any) -> None:
        """Refuses what DP-SGD cannot train correctly (see module docstring), then hooks Opacus'
        per-example gradients into the model's private networks. No data needed."""
        self._check_hardware(hardware)
        if trainer_cfg.get("gradient_clip_val"):
            raise UserError(
                "privacy=dp clips every example's gradient to privacy.max_grad_norm: remove trainer.gradient_clip_val."
            )
        if (trainer_cfg.get("accumulate_grad_batches") or 1) != 1:
            raise UserError(
                "privacy=dp charges one privacy step per Poisson batch: remove trainer.accumulate_grad_batches "
                "(raise data.batch_size instead)."
            )
        penalties = [p.name for p in getattr(model, "penalties", [])]
        if penalties:
            which = ", ".join(f"model.{name}_weight" for name in penalties)
            raise UserError(
                f"privacy=dp: gradient penalties ({which}) need each example's input gradient inside its own "
                "clipped gradient (per-example double back-propagation), which Opacus does not compute: set "
                f"{'=0, '.join(f'model.{name}_weight' for name in penalties)}=0 and use a loss without a Lipschitz "
                "constraint (model=dcgan or model=cgan model.spectral_norm=false)."
            )
        if not getattr(model, "networks_built", True):
            # Table models (src/models/tabular) size their networks from the training split: they are
            # built, checked and hooked in plan(), once the data are loaded; a model that cannot train
            # privately at all says so here (its private_part), before any data.
            model.private_part()
            self._unbuilt = model
            return
        self._check_and_hook(model)

    def _check_and_hook(self, model: GenerativeModule) -> None:
        networks = model.private_networks()
        self._check_layers(model, networks)
        self._check_coverage(model, networks)
        self._hook(networks)

    def _check_hardware(self, hardware: Any) -> None:
        strategy = (
            hardware.strategy if isinstance(hardware.strategy, str) else type(hardware.strategy).__name__
        )
        devices = hardware.devices
        many = (isinstance(devices, int) and devices not in (1,)) or (
            isinstance(devices, list | str) and str(devices) not in ("1", "[0]", "auto")
        )
        if many or hardware.num_nodes != 1 or "ddp" in str(strategy).lower():
            raise UserError(
                f"privacy=dp trains in one process, but hardware={hardware.name} starts several: the noise would be "
                "added once per process and the Poisson batches drawn per process, which the accountant does not "
                "model. Use hardware=cpu or hardware=gpu (a larger data.batch_size keeps the update count)."
            )
        if str(hardware.precision) not in ("32-true", "32"):
            raise UserError(
                f"privacy=dp computes per-example gradients in float32: set hardware.precision=32-true "
                f"(not {hardware.precision})."
            )
        if hardware.compile:
            raise UserError(
                "privacy=dp: Opacus' per-example gradient hooks do not run under torch.compile: set hardware.compile=false."
            )

    def _check_layers(self, model: GenerativeModule, networks: dict[str, nn.Module]) -> None:
        key = "model.d_norm" if "discriminator" in networks else "model.norm"
        for name, network in networks.items():
            for sub_name, module in network.named_modules():
                where = f"{name}.{sub_name}".rstrip(".")
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    raise UserError(
                        f"privacy=dp: batch norm in the {name} ({where}) mixes the examples of a batch, so no example "
                        f"has a gradient of its own to clip: set {key}=layer (privacy.norm sets it when {key} is "
                        "left to the model config)."
                    )
                if hasattr(module, "parametrizations") or any(
                    "spectral" in type(h).__name__.lower() for h in module._forward_pre_hooks.values()
                ):
                    raise UserError(
                        f"privacy=dp: spectral norm in the {name} ({where}) keeps a power-iteration state that "
                        "Opacus' per-example gradients do not support: set model.spectral_norm=false."
                    )
        from opacus.validators import ModuleValidator

        for name, network in networks.items():
            errors = ModuleValidator.validate(network, strict=False)
            if errors:
                raise UserError(
                    f"privacy=dp: the {name} of model={model.model_name} has layers Opacus cannot train privately "
                    f"({'; '.join(str(e) for e in errors)[:300]}): change the model config."
                )

    def _check_coverage(self, model: GenerativeModule, networks: dict[str, nn.Module]) -> None:
        """Every parameter the private optimizer updates needs per-example gradients from the hooks."""
        if "discriminator" in networks:
            return  # a GAN's private optimizer updates exactly the discriminator's parameters
        covered = {id(p) for network in networks.values() for p in network.parameters()}
        outside = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
        if outside:
            hint = (
                " (a learned Gaussian noise scale): set model.gaussian_sigma to a number"
                if "log_sigma" in outside
                else ""
            )
            raise UserError(
                f"privacy=dp: parameters {', '.join(outside)} of model={model.model_name} are trained outside the "
                f"networks whose per-example gradients Opacus computes{hint}."
            )

    def _hook(self, networks: dict[str, nn.Module]) -> None:
        from opacus import GradSampleModule

        for network in networks.values():
            for module in network.modules():
                # Opacus' backward hooks forbid in-place edits of a hooked layer's output; the
                # out-of-place activation computes the same values and keeps the same weights.
                if getattr(module, "inplace", False):
                    module.inplace = False
            # The hooks live on the network's own layers: the model keeps calling (and saving) the
            # network itself, so checkpoints keep their keys and load without Opacus.
            self._hooks.append(GradSampleModule(network, batch_first=True, loss_reduction="sum", strict=True))
        say_backward_hook_warning_once()

    # ------------------------------------------------------------------ the plan and the budget
    def plan(
        self, model: GenerativeModule, datamodule: GenerativeDataModule, trainer_cfg: DictConfig
    ) -> dict[str, Any]:
        """Fixes sampling rate, delta, schedule and noise; refuses a schedule over budget; wires
        Poisson sampling into the data and the privacy engine into the model. Loads the data."""
        from opacus.accountants.utils import get_noise_multiplier

        n = len(datamodule.split("train")[0])
        batch_size = int(datamodule.batch_size)
        if batch_size > n:
            raise UserError(
                f"privacy=dp: data.batch_size={batch_size} exceeds the {n} training examples: lower data.batch_size."
            )
        self.n = n
        self.expected_batch_size = batch_size
        self.sample_rate = batch_size / n
        self.delta = float(self.delta_option) if self.delta_option is not None else 1.0 / (10 * n)
        self.planned_steps = planned_updates(n // batch_size, trainer_cfg, model.private_updates_per_step())
        if self.noise_option is None:
            try:
                with _quiet_accountant():
                    self.noise_multiplier = float(
                        get_noise_multiplier(
                            target_epsilon=self.target_epsilon,
                            target_delta=self.delta,
                            sample_rate=self.sample_rate,
                            steps=self.planned_steps,
                            accountant=self.accountant_name,
                            epsilon_tolerance=self.epsilon_tolerance,
                        )
                    )
            except ValueError:
                raise UserError(
                    f"privacy.target_epsilon={self.target_epsilon} cannot be met by {self.planned_steps} private updates "
                    f"at sample rate {self.sample_rate:.4g} with any noise: raise privacy.target_epsilon or shorten the "
                    "schedule (trainer.max_epochs / max_steps)."
                ) from None
        else:
            self.noise_multiplier = float(self.noise_option)
        planned = self.epsilon_for(self.planned_steps)
        if planned > self.target_epsilon:
            raise UserError(
                f"privacy=dp: the planned {self.planned_steps} private updates at noise_multiplier="
                f"{self.noise_multiplier:g} (sample rate {self.sample_rate:.4g}, delta {self.delta:.3g}) spend epsilon="
                f"{planned:.3f}, over privacy.target_epsilon={self.target_epsilon:g}: raise privacy.noise_multiplier "
                "(or set it to null to solve it), shorten the schedule, or raise the target."
            )
        datamodule.poisson_sample_rate = self.sample_rate
        model.privacy_engine = self
        self.model = model
        if self._unbuilt is model:
            # Built knowing it trains privately (it fits only what the guarantee covers), then checked.
            model.build_from_data(datamodule)
            self._check_and_hook(model)
            self._unbuilt = None
        log.info(
            f"privacy=dp: {self.planned_steps} private updates, sample rate {self.sample_rate:.4g}, noise multiplier "
            f"{self.noise_multiplier:.4f}, clipping {self.max_grad_norm:g}: planned epsilon {planned:.3f} "
            f"<= {self.target_epsilon:g} at delta {self.delta:.3g} ({self.accountant_name})"
        )
        return self.record()

    def epsilon_for(self, steps: int, history: list[tuple[float, float, int]] | None = None) -> float:
        """Epsilon after ``history`` plus ``steps`` updates at this run's noise and sample rate."""
        from opacus.accountants import create_accountant

        accountant = create_accountant(mechanism=self.accountant_name)
        accountant.history = list(history or []) + (
            [(self.noise_multiplier, self.sample_rate, steps)] if steps else []
        )
        return _epsilon(accountant, self.delta)

    # ------------------------------------------------------------------ training
    def make_private_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """``optimizer`` as Opacus' ``DPOptimizer``; every update it makes is charged to the accountant."""
        from opacus.optimizers import DPOptimizer

        if self.noise_multiplier is None:
            raise RuntimeError("DifferentialPrivacy.plan must run before the optimizers are built")
        private = DPOptimizer(
            optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm,
            expected_batch_size=self.expected_batch_size,
            loss_reduction="mean",
        )
        private.attach_step_hook(self._charge)
        self._optimizers.append(private)
        return private

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Per-example hooks off: for passes through a private network that update something else
        (a GAN's generator update back-propagates through the frozen discriminator)."""
        for hooks in self._hooks:
            hooks.disable_hooks()
        try:
            yield
        finally:
            for hooks in self._hooks:
                hooks.enable_hooks()

    def _charge(self, optimizer: Any) -> None:
        self.accountant.step(noise_multiplier=optimizer.noise_multiplier, sample_rate=self.sample_rate)

    @property
    def steps(self) -> int:
        return sum(int(count) for _, _, count in self.accountant.history)

    def epsilon(self) -> float:
        """Epsilon spent so far (at this run's delta)."""
        return _epsilon(self.accountant, self.delta) if self.accountant.history else 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A resumed run restored the accountant's history: the rest of the schedule must still fit.
        done = self.steps
        if not done:
            return
        foreign = {(s, q) for s, q, _ in self.accountant.history} - {
            (self.noise_multiplier, self.sample_rate)
        }
        projected = self.epsilon_for(max(self.planned_steps - done, 0), list(self.accountant.history))
        if projected > self.target_epsilon or foreign:
            raise UserError(
                f"privacy=dp: the checkpoint already spent epsilon={self.epsilon():.3f} in {done} updates"
                f"{' at other noise or sample rate' if foreign else ''}; finishing the schedule would spend "
                f"{projected:.3f} > privacy.target_epsilon={self.target_epsilon:g}: resume with the run's own settings."
            )
        log.info(f"privacy=dp: resumed after {done} private updates (epsilon {self.epsilon():.3f})")

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_size = len(batch[0])

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if optimizer not in self._optimizers or self._batch_size != 0:
            return
        # An empty Poisson batch: no example, no per-example gradient; the update is noise alone.
        for p in optimizer.params:
            if p.grad_sample is None:
                p.grad_sample = p.new_zeros((0, *p.shape))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if (batch_idx + 1) % max(1, trainer.log_every_n_steps) == 0:
            pl_module.log("privacy/epsilon", self.epsilon(), on_step=True, on_epoch=False)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.log("privacy/epsilon", self.epsilon(), on_step=False, on_epoch=True)

    # ------------------------------------------------------------------ records
    def record(self) -> dict[str, Any]:
        """The guarantee as recorded in metrics.json, checkpoints and export manifests."""
        return {
            "mechanism": MECHANISM,
            "private_part": self.model.private_part() if self.model is not None else None,
            "epsilon": self.epsilon(),
            "delta": self.delta,
            "delta_rule": "privacy.delta" if self.delta_option is not None else "1/(10 n)",
            "target_epsilon": self.target_epsilon,
            "noise_multiplier": self.noise_multiplier,
            "noise_multiplier_rule": "privacy.noise_multiplier"
            if self.noise_option is not None
            else "solved",
            "max_grad_norm": self.max_grad_norm,
            "sample_rate": self.sample_rate,
            "expected_batch_size": self.expected_batch_size,
            "n_train": self.n,
            "steps": self.steps,
            "planned_steps": self.planned_steps,
            "accountant": self.accountant_name,
            "library": "opacus",
            "version": metadata.version("opacus"),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": [list(entry) for entry in self.accountant.history],
            "accountant": self.accountant_name,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("accountant", self.accountant_name) != self.accountant_name:
            raise UserError(
                f"privacy.accountant={self.accountant_name}, but the checkpoint was accounted with "
                f"{state_dict['accountant']}: resume with privacy.accountant={state_dict['accountant']}."
            )
        self.accountant.history = [tuple(entry) for entry in state_dict.get("history", [])]

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[PRIVACY_KEY] = self.record()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Stamps the run's whole spend into every checkpoint it kept.

        ``best.ckpt`` is chosen among all iterates by later validation scores, so what it reveals
        of the training data is bounded by the whole run's epsilon, not by its own step's.
        """
        if trainer.global_rank != 0:
            return
        record = self.record()
        paths = {
            path
            for callback in trainer.checkpoint_callbacks
            for path in (getattr(callback, "best_model_path", ""), getattr(callback, "last_model_path", ""))
            if path and Path(path).is_file()
        }
        for path in sorted(paths):
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
            checkpoint[PRIVACY_KEY] = {**record, "stamped_at_fit_end": True}
            tmp = f"{path}.{os.getpid()}.tmp"
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)


def _epsilon(accountant: Any, delta: float) -> float:
    with _quiet_accountant():
        value = float(accountant.get_epsilon(delta=delta))
    return value if math.isfinite(value) else float("inf")


BACKWARD_HOOK_WARNING = "Full backward hook is firing when gradients are computed"
_backward_hook_warning_said = False


def say_backward_hook_warning_once() -> None:
    """Shows torch's backward-hook warning once per process instead of at every step.

    Opacus hooks every layer of a private network, the first one too, whose input (the images)
    needs no gradient, so torch warns "Full backward hook is firing when gradients are computed
    with respect to module outputs ..." at every backward pass. A ``once`` filter does not hold:
    CPython keys it on the warning site's registry, which every ``catch_warnings`` block (the
    accountant's at each ``privacy/epsilon`` log among them) clears. So: one log line, then ignored.
    """
    global _backward_hook_warning_said
    warnings.filterwarnings("ignore", message=BACKWARD_HOOK_WARNING)
    if not _backward_hook_warning_said:
        _backward_hook_warning_said = True
        log.info(
            f"privacy=dp: torch warns '{BACKWARD_HOOK_WARNING} with respect to module outputs' at every step of "
            "a private run (Opacus hooks the first layer, whose input images need no gradient): expected, "
            "shown this once."
        )


class _quiet_accountant(warnings.catch_warnings):
    """Opacus' RDP accountant warns when the optimal order is the largest one it tries; the
    bound is still valid (only possibly loose), and the warning would repeat at every log."""

    def __enter__(self) -> Any:
        result = super().__enter__()
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return result
