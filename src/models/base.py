"""What every generative model offers the rest of the framework.

Data arrive as ``uint8`` images in ``[0, 255]`` (or float points); each model maps them to its
own ``input_range`` on the device. Samples leave as images in ``[0, 1]`` (or points), whatever
the model's internals. Callbacks, metrics and the exporter rely only on this surface:
``sample``, ``sample_labels``, ``num_classes``, ``data_kind``, and ``reconstruct`` where defined.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from src.models.checkpoint import CONFIG_KEY, PRIVACY_KEY, read_checkpoint
from src.utils.errors import UserError
from src.utils.images import to_uint8

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class GenerativeModule(pl.LightningModule):
    """Base LightningModule for VAEs and GANs.

    Args:
        image_size, channels: image geometry from the data config (``image_size=None`` means
            point data of dimension ``point_dim``).
        num_classes: classes in the data (0 = unlabelled).
        conditional: generate given a class label; needs labelled data.
        monitor, monitor_mode: the score that selects ``best.ckpt``; ``monitor="auto"`` takes the first
            of :attr:`monitor_candidates` that the run logs, ``None`` keeps the last checkpoint as the
            best. ``monitor_mode=None`` follows the table of scores (``src/metrics/registry.py``);
            the run assembly settles both before training (``src.runtime.build.resolve_monitors``).
        name: the model's config name, used in error messages.
    """

    input_range: tuple[float, float] = (-1.0, 1.0)
    # True when `sample` draws from an exponential moving average of the generator's weights.
    uses_ema: bool = False
    # The white-box membership-inference attack `membership_score` implements (src.metrics.membership).
    membership_attack: str | None = None
    # What `monitor="auto"` picks: the first of these that the run logs.
    monitor_candidates: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        image_size: int | None,
        channels: int | None,
        num_classes: int,
        conditional: bool,
        monitor: str | None,
        monitor_mode: Literal["min", "max"] | None,
        point_dim: int | None = None,
        name: str,
    ) -> None:
        super().__init__()
        self.model_name = name
        self.data_kind: Literal["image", "points"] = "image" if image_size is not None else "points"
        if self.data_kind == "image" and channels is None:
            raise UserError(
                f"model={name}: the data config gives image_size but no channels; set data.channels."
            )
        if self.data_kind == "points" and not point_dim:
            raise UserError(
                f"model={name}: the data has neither image_size nor point_dim; check the data config."
            )
        if conditional and not num_classes:
            raise UserError(
                f"model={name} is conditional and needs labelled data, but this data has no classes: use labelled data "
                "(mnist, fashion_mnist, cifar10, or an image folder with class sub-folders) or an unconditional model."
            )
        self.image_size = image_size
        self.channels = channels
        self.point_dim = point_dim
        self.conditional = conditional
        self.num_classes = int(num_classes) if conditional else 0
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.run_config: dict[str, Any] | None = None
        self.latent_dim = 0  # set by subclasses with a latent space
        # Differentially private training (privacy=dp), wired by src.privacy: the engine that turns
        # the private part's optimizer into Opacus' DPOptimizer, and the guarantee read from a checkpoint.
        self.privacy_engine: Any = None
        self.privacy_record: dict[str, Any] | None = None
        # Training-step scalars waiting for the next step that logs (log_step_scalars).
        self._pending_step_scalars: dict[str, Tensor | float] = {}

    # ------------------------------------------------------------------ data ranges
    @property
    def sample_shape(self) -> tuple[int, ...]:
        if self.data_kind == "points":
            return (int(self.point_dim),)
        return (int(self.channels), int(self.image_size), int(self.image_size))

    def to_model_range(self, x: Tensor) -> Tensor:
        if self.data_kind == "points":
            return x.float()
        low, high = self.input_range
        return x.float() * ((high - low) / 255.0) + low

    def to_unit(self, x: Tensor) -> Tensor:
        """Model-range images -> ``[0, 1]`` (points pass through)."""
        if self.data_kind == "points":
            return x
        low, high = self.input_range
        return ((x - low) / (high - low)).clamp_(0.0, 1.0)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        return self.to_model_range(x), y

    # ------------------------------------------------------------------ sampling
    def sample_labels(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Uniform class labels for conditional models, ``None`` otherwise."""
        if not self.num_classes:
            return None
        return torch.randint(self.num_classes, (n,), generator=generator, device=self.device)

    @torch.inference_mode()
    def sample(
        self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """``n`` samples: images in ``[0, 1]`` of shape ``(n, C, S, S)``, or points ``(n, D)``."""
        if self.num_classes and labels is None:
            labels = self.sample_labels(n, generator)
        return self.to_unit(self._generate(n, labels, generator).float())

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Standard-normal latent codes ``(n, latent_dim)`` on the model's device."""
        return torch.randn(n, self.latent_dim, generator=generator, device=self.device)

    def _generate(self, n: int, labels: Tensor | None, generator: torch.Generator | None) -> Tensor:
        return self.generate_from_latent(self.sample_latents(n, generator), labels)

    def generate_from_latent(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """Latent codes ``(n, latent_dim)`` -> samples in the model's output range."""
        raise NotImplementedError

    @torch.inference_mode()
    def interpolate(self, pairs: int, steps: int, generator: torch.Generator | None = None) -> Tensor:
        """``pairs`` rows of ``steps`` samples along great circles between random latent codes
        (slerp suits Gaussian latents, whose mass lies near a sphere); one class per row for
        conditional models. Images in ``[0, 1]``, shape ``(pairs * steps, C, S, S)``."""
        ends = torch.randn(2, pairs, self.latent_dim, generator=generator, device=self.device)
        t = torch.linspace(0, 1, steps, device=self.device)[None, :, None]
        a, b = ends[0][:, None], ends[1][:, None]
        omega = torch.arccos(
            (nn.functional.normalize(a, dim=-1) * nn.functional.normalize(b, dim=-1))
            .sum(-1, keepdim=True)
            .clamp(-1, 1)
        )
        sin = torch.sin(omega).clamp_min(1e-6)
        z = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / sin
        labels = None
        if self.num_classes:
            labels = self.sample_labels(pairs, generator).repeat_interleave(steps)
        return self.to_unit(self.generate_from_latent(z.reshape(pairs * steps, -1), labels).float())

    def validation_scores(self) -> list[str]:
        """Names (without ``val/``) this model logs at validation itself; metrics callbacks add theirs."""
        return []

    def log_step_scalars(
        self, values: dict[str, Tensor | float], batch_idx: int, prog_bar: tuple[str, ...] = (), **kwargs: Any
    ) -> None:
        """``self.log`` for training-step scalars, called only on steps whose values are kept.

        Each ``self.log`` call costs Lightning ~0.1-0.3 ms of Python on the 2-core CPU (several
        times a GPU step of these models), while a step's values reach the loggers only every
        ``trainer.log_every_n_steps`` steps; the rest are overwritten unseen. Logged here: those
        steps (Lightning's own rule), the last batch of each epoch and the last steps of a
        ``max_steps`` run, so the progress bar, epoch-end callbacks and ``metrics.json`` still read
        the newest values. ``experiments/benchmarks`` (``training.overhead``) measures the saving.
        """
        # The newest value of every key: a GAN with n_critic > 1 has no loss/g on most steps.
        pending = self._pending_step_scalars
        for key, value in values.items():
            pending[key] = value.detach() if isinstance(value, Tensor) else value
        trainer = self.trainer
        last_of_epoch = batch_idx + 1 >= trainer.num_training_batches
        # global_step may count this step already or not yet (GANs count generator updates).
        ending = trainer.max_steps > 0 and self.global_step + 1 >= trainer.max_steps
        # Private API (docs/private_apis.md): the exact test Lightning applies before it logs.
        if not (trainer._logger_connector.should_update_logs or last_of_epoch or ending):
            return
        for key, value in pending.items():
            self.log(key, value, prog_bar=key in prog_bar, **kwargs)
        pending.clear()

    # ------------------------------------------------------------------ inpainting
    # Methods each model offers for ``inpaint`` (the first is the default).
    inpaint_methods: tuple[str, ...] = ()
    # The settings ``inpaint`` uses where the caller leaves them unset (``steps`` and the model's own).
    inpaint_defaults: ClassVar[dict[str, Any]] = {}

    def inpaint_settings(self, steps: int | None = None, **options: Any) -> dict[str, Any]:
        """The settings an ``inpaint`` call with these arguments uses, defaults filled in (for the record)."""
        given = {"steps": steps, **options}
        return {**self.inpaint_defaults, **{k: v for k, v in given.items() if v is not None}}

    def inpaint(
        self,
        images: Tensor,
        mask: Tensor,
        labels: Tensor | None = None,
        generator: torch.Generator | None = None,
        method: str | None = None,
        steps: int | None = None,
        **options: Any,
    ) -> Tensor:
        """Fills the pixels where ``mask`` is True; every other pixel is returned exactly as given.

        Args:
            images: ``uint8`` images ``(N, C, H, W)`` in ``[0, 255]``.
            mask: bool ``(N, 1 | C, H, W)``, True = missing.
            labels: the known classes (conditional models use them; required there).
            method, steps, options: the model's filling method and its settings (see the subclass).

        Returns ``uint8`` images: the model's fill where ``mask`` is True, ``images`` elsewhere.
        """
        if self.data_kind != "image":
            raise UserError(f"model={self.model_name} generates points: inpainting needs images.")
        if not self.inpaint_methods:
            raise UserError(f"model={self.model_name} cannot inpaint.")
        method = method or self.inpaint_methods[0]
        if method not in self.inpaint_methods:
            raise UserError(
                f"method={method} is not an inpainting method of model={self.model_name}: use one of {', '.join(self.inpaint_methods)}."
            )
        if self.num_classes and labels is None:
            raise UserError(f"model={self.model_name} is conditional: inpainting needs the images' labels.")
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("inpaint takes uint8 images (N, C, H, W)")
        mask = mask.to(torch.bool).expand_as(images).to(images.device)
        x = self.to_model_range(images.to(self.device))
        was_training = self.training
        self.eval()
        try:
            filled = self._inpaint(
                x,
                mask.to(self.device),
                labels if self.num_classes else None,
                generator,
                method,
                steps,
                **options,
            )
        finally:
            self.train(was_training)
        filled = to_uint8(self.to_unit(filled.detach().float()))
        # The observed pixels are copied, never recomputed: bit-identical by construction.
        return torch.where(mask, filled.to(images.device), images)

    def _inpaint(
        self,
        x: Tensor,
        mask: Tensor,
        labels: Tensor | None,
        generator: torch.Generator | None,
        method: str,
        steps: int | None,
        **options: Any,
    ) -> Tensor:
        """Model-range images ``x`` (missing pixels arbitrary) -> model-range fills of the whole image."""
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> GenerativeModule:
        """The trained model of a ``src.train`` checkpoint, in eval mode, in one call.

        Built from the run config stored in the checkpoint (no data, Hydra or hardware needed),
        with its trained weights (the generator's moving average included), so it can
        ``sample``, ``reconstruct`` or be scored and exported from a notebook. Called on a
        subclass (``VaeModule.from_checkpoint``), the checkpoint must hold that kind of model.
        """
        from hydra.utils import instantiate

        checkpoint = read_checkpoint(path)
        run_config = checkpoint[CONFIG_KEY]
        model = instantiate(run_config["model"])
        if not isinstance(model, cls):
            raise UserError(
                f"{path} holds a {type(model).__name__}, not a {cls.__name__}: "
                "load it with GenerativeModule.from_checkpoint."
            )
        # As Lightning does on resume: the hook first, so a model whose networks are sized from its
        # data (tables: src/models/tabular) rebuilds them from the checkpoint before the weights load.
        model.on_load_checkpoint(checkpoint)
        model.load_state_dict(checkpoint["state_dict"])
        return model.to(map_location).eval()

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: str | Path, map_location: Any = None, **kwargs: Any
    ) -> GenerativeModule:
        """Lightning's loader, answered by :meth:`from_checkpoint`: the constructor arguments are
        the stored run config's, not Lightning's ``hyper_parameters``."""
        if kwargs:
            raise TypeError(
                f"{cls.__name__}.load_from_checkpoint takes no constructor overrides ({', '.join(kwargs)}): "
                "the model is rebuilt from the run config stored in the checkpoint."
            )
        return cls.from_checkpoint(checkpoint_path, map_location or "cpu")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.run_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.run_config = checkpoint.get(CONFIG_KEY, self.run_config)
        self.privacy_record = checkpoint.get(PRIVACY_KEY, self.privacy_record)

    # ------------------------------------------------------------------ privacy and membership
    @property
    def private_training(self) -> bool:
        """True while a privacy engine trains this model with per-example clipping (DP-SGD)."""
        return self.privacy_engine is not None

    def private_networks(self) -> dict[str, nn.Module]:
        """The networks that see training data and are trained with DP-SGD under ``privacy=dp``."""
        raise NotImplementedError

    def private_updates_per_step(self) -> int:
        """Private optimizer updates per ``trainer.global_step`` (GANs: ``n_critic``)."""
        return 1

    def private_part(self) -> str:
        """What the privacy guarantee covers, in words (recorded with it)."""
        raise NotImplementedError

    def membership_score(self, x: Tensor, y: Tensor | None) -> Tensor:
        """White-box membership-inference score per example of model-range ``x``: higher means
        "more likely a training example" (see ``src.metrics.membership``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers for subclasses
    def _require_images(self) -> None:
        if self.data_kind != "image":
            raise UserError(
                f"model={self.model_name} needs image data, but this data has {self.point_dim} values per sample "
                "(2-D points or a table's columns): use a GAN model (dcgan, wgan_gp, sngan) with ring8/grid25, "
                "model=tvae|ctgan|gaussian_copula with a table, or image data with this model."
            )

    def _make_optimizer(
        self,
        factory: OptimizerFactory,
        params: Any,
        scheduler: SchedulerFactory | None,
        private: bool = False,
    ) -> Any:
        """The optimizer (and schedule) of ``params``; ``private``: the part DP-SGD trains, whose
        optimizer the privacy engine wraps (clip each example's gradient, add noise, charge the step)."""
        optimizer = factory(params=params)
        if private and self.privacy_engine is not None:
            optimizer = self.privacy_engine.make_private_optimizer(optimizer)
        if scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler(optimizer=optimizer), "interval": "epoch"},
        }
