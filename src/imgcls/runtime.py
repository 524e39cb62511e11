"""Where and how to compute: device, precision, memory format, threads, seeds.

`resolve` makes every one of these choices for a network in one place; training, the lr
range test, the Predictor and the speed measures all take theirs from it, so a run's
--no-channels-last or --precision means the same thing everywhere. The model file records
the choices a network was trained with (ModelCard.runtime), and prediction follows them.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import nn

from imgcls.errors import UserError
from imgcls.utils.cpus import usable_cpus

if TYPE_CHECKING:
    from imgcls.models.registry import ModelSpec

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class RuntimeRequest(Protocol):
    """What the user asked for (a TrainConfig is one): None and "auto" leave it to resolve."""

    device: str | None
    precision: str  # "auto" | "fp32" | "bf16" | "fp16"
    channels_last: bool  # allowed; the network's spec decides whether it pays
    threads: int | None


@dataclass(frozen=True)
class Requested:
    """A RuntimeRequest outside training: prediction, speed measures."""

    device: str | None = None
    precision: str = "auto"
    channels_last: bool = True
    threads: int | None = None


@dataclass(frozen=True)
class RuntimeChoice:
    device: torch.device
    dtype: torch.dtype | None  # the autocast dtype; None: plain fp32
    channels_last: bool  # the memory format of the weights and of every batch
    threads: int  # torch's intra-op threads on the CPU

    @property
    def precision(self) -> str:
        return precision_name(self.dtype)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.dtype)

    def place(self, model: nn.Module) -> nn.Module:
        """`model` on the device, in the memory format."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def layout(self, batch: torch.Tensor) -> torch.Tensor:
        """A batch [N, C, H, W] in the memory format the weights are in."""
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch

    def apply_threads(self) -> None:
        torch.set_num_threads(self.threads)


def resolve(
    config: RuntimeRequest, spec: ModelSpec, *, device: torch.device | None = None
) -> RuntimeChoice:
    """Every runtime choice for network `spec` under `config`. `device`: one already picked
    (a torchrun rank's GPU, or the one --model auto timed its candidates on)."""
    device = device or pick_device(config.device)
    return RuntimeChoice(
        device=device,
        dtype=pick_precision(config.precision, device, cpu_bf16_pays=spec.cpu_bf16),
        # Asked for (on by default) and faster for this network (ModelSpec.channels_last).
        channels_last=config.channels_last and spec.channels_last,
        threads=config.threads or usable_cpus(),
    )


def pick_device(requested: str | None) -> torch.device:
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"--device {requested}: no CUDA device here; leave --device out for the CPU"
        )
    return device


def cpu_runs_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX512-BF16 / AMX): there autocast is faster."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_precision(
    requested: str, device: torch.device, *, cpu_bf16_pays: bool = True
) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. `cpu_bf16_pays`: whether this network
    trains faster in bf16 on a CPU (tiny ones don't; see ModelSpec.cpu_bf16)."""
    if requested == "fp32":
        return None
    if requested in _DTYPES:
        return _DTYPES[requested]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    native = device.type == "cpu" and cpu_runs_bf16()
    return torch.bfloat16 if native and cpu_bf16_pays else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or usable_cpus())



def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
