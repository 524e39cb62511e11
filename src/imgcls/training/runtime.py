"""Where and how fast to compute: device, precision, threads, seeds."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from imgcls.errors import UserError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (taskset, a container's cpuset), not the
    machine's count, since one thread per core too many made a pinned run's step 4-9x slower."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
