"""What a benchmark ran on, recorded next to its numbers: speed ratios here depend on the
CPU's vector units (AVX2 vs AVX512 / native bf16) as much as on the code."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch
import torchvision

from imgcls.predict.backends.timing import cpu_model
from imgcls.runtime import cpu_runs_bf16
from imgcls.utils.cpus import cpu_kind


def describe() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpu_kind": cpu_kind(),  # the instruction sets that pick torch's and onnxruntime's kernels
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "vector_isa": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_runs_bf16(),
        # Set by bench/avx2.sh, which runs a bench as on the AVX2-only kind of machine.
        "isa_limit": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }
