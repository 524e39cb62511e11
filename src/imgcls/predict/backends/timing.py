"""How long each backend takes per batch on this machine: measured once, kept in a JSON
file in the model's cache, `{machine: {backend: {batch size: ms}}}`.

The machine key holds what the ranking depends on: the CPU model and its kernel-deciding
instruction sets (two "AMD EPYC" VMs, one with AVX512 and VNNI and one with AVX2 only, rank
the backends differently), any limit set on torch's kernels, the thread count and the torch /
onnxruntime versions; another machine (or `--threads`) measures again.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from imgcls.utils.cpus import cpu_kind, isa_limits
from imgcls.utils.files import write_json

Timings = dict[str, dict[int, float]]  # backend -> batch size -> median ms per batch
MIN_RUNS, BUDGET_S = 3, 1.0  # per backend and batch size, after one warm-up run
# The batch sizes a Predictor's backend is chosen for when its caller names none: one image,
# and a full batch. Here, torch-free, so the Predictor's module reads it without torch.
DEFAULT_BATCH_SIZES = (1, 256)


def machine_key(threads: int) -> str:
    # Versions from the installed metadata, not by importing: a torch-free prediction
    # (cached_onnx.py) reads this key too.
    limits = f" | {isa_limits()}" if isa_limits() else ""
    return (f"{cpu_model()} | {cpu_kind()}{limits} | {threads} threads | "
            f"torch {_installed('torch')} | onnxruntime {_installed('onnxruntime')}")


def _installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def median_ms(run: Callable[[], object]) -> float:
    """Median wall time of `run` over MIN_RUNS runs, or more while within BUDGET_S."""
    run()  # the first call allocates and picks kernels
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < MIN_RUNS or time.perf_counter() - started < BUDGET_S:
        begin = time.perf_counter()
        run()
        times.append((time.perf_counter() - begin) * 1000)
        if len(times) >= 50:
            break
    return sorted(times)[len(times) // 2]


def read_timings(path: Path, machine: str) -> Timings:
    if not path.is_file():
        return {}
    try:
        stored = json.loads(path.read_text()).get(machine, {})
    except (OSError, ValueError):
        return {}  # a damaged file is measured again
    return {backend: {int(size): float(ms) for size, ms in sizes.items()}
            for backend, sizes in stored.items()}


def write_timings(path: Path, machine: str, timings: Timings) -> None:
    document: dict = {}
    if path.is_file():
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            document = {}
    document[machine] = {backend: {str(size): round(ms, 3) for size, ms in sizes.items()}
                         for backend, sizes in timings.items()}
    write_json(path, document)


def fastest(timings: Timings, size: int) -> str:
    measured = [name for name, sizes_ms in timings.items() if sizes_ms]
    return min(measured, key=lambda name: timings[name][size])


def nearest(measured_sizes: list[int], size: int) -> int:
    """The measured batch size nearest `size` in log scale (64 is nearer 256 than 1)."""
    return min(measured_sizes, key=lambda measured: abs(math.log(measured / size)))
