"""What CPU this process runs on: how many cores it may use, and which kernel-deciding
instruction sets the CPU has. Torch-free, shared by the runtime and torch-free paths."""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (taskset, a container's cpuset), not the
    machine's count, since one thread per core too many made a pinned run's step 4-9x slower."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


# The instruction-set features that decide which kernels torch (oneDNN, ATen) and onnxruntime
# (MLAS) run, as /proc/cpuinfo spells them. Two CPUs that agree on these run the same kernels:
# on x86-64 without VNNI, MLAS sums uint8 x int8 products in saturating 16-bit pairs, with it
# in 32 bits; bf16 and AMX change oneDNN's choices; aarch64's dot products are int32 throughout.
_KERNEL_FEATURES = {
    "x86_64": ("avx2", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8"),
    "aarch64": ("asimddp", "i8mm", "sve", "bf16"),
}
# numpy asks CPUID itself, so it is right where /proc/cpuinfo is not (under `qemu-x86_64 -cpu`,
# which bench/int8_schemes.py uses to run as an AVX2-only CPU); its names for the same features.
_NUMPY_NAMES = {"avx2": "AVX2", "avx512bw": "AVX512BW", "avx512_vnni": "AVX512VNNI",
                "avx512_bf16": "AVX512BF16", "asimddp": "ASIMDDP", "sve": "SVE"}
# Environment variables that limit torch's kernels below what the CPU has (bench/avx2.sh).
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


@lru_cache(maxsize=1)
def cpu_kind() -> str:
    """The machine's architecture and kernel-deciding features, e.g. "x86_64 avx2 avx512bw
    avx512_vnni avx512_bf16": what a measurement or an int8 check made here holds for."""
    machine = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
    flags = _cpu_flags()
    present = [flag for flag in _KERNEL_FEATURES.get(machine, ()) if flag in flags]
    return " ".join([machine, *present])


def isa_limits() -> str:
    """The environment's limits on torch's kernels ("": none), e.g. ATEN_CPU_CAPABILITY=avx2."""
    return " ".join(f"{name}={os.environ[name]}" for name in ISA_LIMITS if os.environ.get(name))


def _cpu_flags() -> set[str]:
    flags = _proc_cpuinfo_flags()
    detected = _numpy_detected()
    for flag, numpy_name in _NUMPY_NAMES.items():
        if numpy_name in detected:  # CPUID's answer wins over the kernel's list
            flags.discard(flag)
            if detected[numpy_name]:
                flags.add(flag)
    return flags


def _proc_cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86-64, aarch64
            return set(value.split())
    return set()


def _numpy_detected() -> dict[str, bool]:
    try:  # numpy 2 keeps its CPUID results in _core, numpy 1 in core
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return {}
    return dict(features)
