"""The ``hardware`` config group: one object that checks the machine and configures the Trainer."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch.strategies import Strategy

from src.hardware.strategies import search_unused_parameters
from src.utils.errors import UserError
from src.utils.types import PositiveInt

Precision = Literal[
    "32-true", "32", "64-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "transformer-engine"
]


class Hardware:
    """Accelerator, devices, strategy and numerics of a run.

    Args:
        accelerator, devices, num_nodes, strategy, precision: passed to ``lightning.Trainer``.
        channels_last: keep image tensors and conv weights in NHWC layout (faster convs on GPUs).
        compile: ``torch.compile`` the model's networks in place (``compile_mode`` as in torch).
        matmul_precision: ``torch.set_float32_matmul_precision`` ("high" enables TF32 on GPUs).
    """

    def __init__(
        self,
        accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto",
        devices: int | str | list[int] = 1,
        num_nodes: PositiveInt = 1,
        strategy: str | Strategy = "auto",
        precision: Precision = "32-true",
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: Literal[
            "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
        ] = "default",
        matmul_precision: Literal["highest", "high", "medium"] = "highest",
        name: str = "custom",
    ) -> None:
        self.accelerator = accelerator
        self.devices = devices
        self.num_nodes = num_nodes
        self.strategy = strategy
        self.precision = precision
        self.channels_last = channels_last
        self.compile = compile
        self.compile_mode = compile_mode
        self.matmul_precision = matmul_precision
        self.name = name

    def check(self) -> None:
        """Fails before any work when the machine cannot run this configuration."""
        wants_gpu = self.accelerator in ("gpu", "cuda")
        has_gpu = torch.cuda.is_available()
        if wants_gpu and not has_gpu:
            raise UserError(
                f"hardware={self.name} needs a CUDA GPU, but none is visible here: use hardware=cpu "
                "(or hardware=auto, which picks a GPU when there is one)."
            )
        if wants_gpu and isinstance(self.devices, int) and self.devices > torch.cuda.device_count():
            raise UserError(
                f"hardware.devices={self.devices} but this machine has {torch.cuda.device_count()} GPU(s): "
                "lower hardware.devices or use hardware.devices=-1 (all)."
            )
        runs_on_cpu = self.accelerator == "cpu" or (self.accelerator == "auto" and not has_gpu)
        if runs_on_cpu and self.precision.startswith("16"):
            raise UserError(
                f"hardware.precision={self.precision} needs a GPU; on a CPU use hardware.precision=bf16-mixed or 32-true."
            )

    def trainer_kwargs(self) -> dict[str, Any]:
        return {
            "accelerator": self.accelerator,
            "devices": self.devices,
            "num_nodes": self.num_nodes,
            "strategy": self.strategy,
            "precision": self.precision,
        }

    def device(self) -> torch.device:
        """The device a single-process command (generate, evaluate_dataset) runs on."""
        if self.accelerator in ("gpu", "cuda") or (self.accelerator == "auto" and torch.cuda.is_available()):
            return torch.device("cuda", 0)
        return torch.device("cpu")

    def apply_global_settings(self) -> None:
        torch.set_float32_matmul_precision(self.matmul_precision)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        if getattr(model, "needs_unused_parameter_search", False):
            # A model whose backward passes each reach only some parameters (GANs) declares it;
            # the others keep the cheaper find_unused_parameters=False of conf/hardware/ddp*.yaml.
            self.strategy = search_unused_parameters(self.strategy)
        if self.channels_last:
            model.memory_format = torch.channels_last
            model.to(memory_format=torch.channels_last)
        if self.compile:
            for module in getattr(model, "compile_targets", lambda: [model])():
                module.compile(mode=self.compile_mode)
        return model
