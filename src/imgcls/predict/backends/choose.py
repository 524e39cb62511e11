"""`open_backend`: the backend a name asks for, built from a loaded model file."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from imgcls.errors import UserError
from imgcls.export.cache import BackendCache, cache_for
from imgcls.export.export_check import PARITY_TOLERANCE, record_parity
from imgcls.export.int8_trust import int8_verdict
from imgcls.export.onnx_file import export_available, write_fp32_onnx
from imgcls.export.session import OnnxRunner
from imgcls.predict.backends.auto import TIMED_BATCH_CAP, AutoBackend, Factory
from imgcls.predict.backends.base import Backend, BackendInputs
from imgcls.predict.backends.timing import DEFAULT_BATCH_SIZES, machine_key
from imgcls.predict.backends.torch_backends import EagerTorch, FoldedTorch, JitTorch

BACKENDS = ("auto", "torch", "torch-folded", "torch-jit", "onnx", "onnx-int8")
_CPU_ONLY = {"torch-jit", "onnx", "onnx-int8"}  # oneDNN prepacking; onnxruntime's CPU provider
_PARITY_IMAGES = 4  # seeded random images an explicitly chosen backend is checked on
_log = logging.getLogger("imgcls")


def open_backend(name: str, inputs: BackendInputs, *,
                 batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES) -> Backend:
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; --backend takes one of: "
                        f"{', '.join(BACKENDS)}")
    on_cpu = inputs.runtime.device.type == "cpu"
    if name in _CPU_ONLY and not on_cpu:
        raise UserError(f"--backend {name} runs on the CPU; add --device cpu, or use "
                        "--backend torch or torch-folded on a GPU")
    if name == "auto":
        return _auto(inputs, batch_sizes)
    if name == "torch":
        return EagerTorch(inputs)
    cache = _LazyCache(inputs)
    if name == "onnx-int8" and not _int8_trusted(cache.get(), announce=True):
        name = "onnx"  # refused on this CPU: the fp32 export answers, as the warning said
    backend = _factories(inputs, cache)[name]()
    if name != "onnx-int8":  # int8 differs by design; its export checked its accuracy
        check_parity(backend, inputs, cache)
    return backend


class _LazyCache:
    """The model file's cache, found (its sha256 computed) only if a backend needs it."""

    def __init__(self, inputs: BackendInputs) -> None:
        self.inputs = inputs
        self._cache: BackendCache | None = None

    def get(self) -> BackendCache:
        if self._cache is None:
            self._cache = cache_for(self.inputs.model_file)
        return self._cache


def _factories(inputs: BackendInputs, cache: _LazyCache) -> dict[str, Factory]:
    threads = torch.get_num_threads()  # what torch runs with here (serve sets --threads)
    return {
        "torch": lambda: EagerTorch(inputs),
        "torch-folded": lambda: FoldedTorch(inputs),
        "torch-jit": lambda: JitTorch(inputs),
        "onnx": lambda: cached_runner(fp32_onnx(cache.get(), inputs.model_file), "onnx",
                                      threads),
        # Built only after _int8_trusted (explicit) or int8_passed (auto) said it may run here.
        "onnx-int8": lambda: cached_runner(cache.get().path("int8.onnx"), "onnx-int8", threads),
    }


def cached_runner(path: Path, name: str, threads: int) -> OnnxRunner:
    """An export in the backend cache as a backend: a broken one is rebuilt, not re-exported."""
    return OnnxRunner(path, threads=threads, name=name,
                      broken_hint="delete it and load again to rebuild it")


def fp32_onnx(cache: BackendCache, model_file: Path) -> Path:
    """The cached fp32 export of `model_file`, written on first use."""
    path = cache.path("fp32.onnx")
    return path if path.is_file() else write_fp32_onnx(model_file, path)


def _int8_trusted(cache: BackendCache, *, announce: bool) -> bool:
    """Whether the int8 export may run on this CPU (re-checked here once where it was checked
    on a CPU of another kind). A refusal is logged; so is a re-check, when `announce`.
    Raises UserError where there is no int8 export or it failed its export check."""
    verdict = int8_verdict(cache, threads=torch.get_num_threads())
    if verdict.reason and (announce or not verdict.usable):
        _log.warning("imgcls: %s", verdict.reason)
    return verdict.usable


def int8_passed(cache: BackendCache) -> bool:
    """Whether `auto` may time the int8 export: it exists, passed, and holds on this CPU."""
    try:
        return _int8_trusted(cache, announce=False)
    except UserError:
        return False


def check_parity(backend: Backend, inputs: BackendInputs, cache: _LazyCache) -> None:
    pixels = seeded_pixels(inputs, _PARITY_IMAGES)
    expected = EagerTorch(inputs).outputs(pixels, _PARITY_IMAGES)[0]
    found = backend.outputs(pixels, _PARITY_IMAGES)[0]
    difference = float(np.abs(found - expected).max())
    if difference > PARITY_TOLERANCE:
        raise UserError(f"--backend {backend.name} gives probabilities {difference:.1e} away "
                        f"from eager torch (more than {PARITY_TOLERANCE:g}); use --backend torch")
    if backend.name == "onnx":  # what a torch-free prediction re-checks on another CPU kind
        record_parity(cache.get(), pixels, expected)


def seeded_pixels(inputs: BackendInputs, count: int) -> np.ndarray:
    """uint8 pixels [count, C, H, W], the same on every machine (torch's generator)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, *inputs.card.input.chw), generator=generator,
                         dtype=torch.uint8).numpy()


def _auto(inputs: BackendInputs, batch_sizes: Sequence[int]) -> Backend:
    cache = _LazyCache(inputs)
    factories = _factories(inputs, cache)
    if inputs.runtime.device.type != "cpu":
        factories = {name: factories[name] for name in ("torch", "torch-folded")}
        machine = torch.cuda.get_device_name(inputs.runtime.device)
    else:
        machine = machine_key(torch.get_num_threads())
        if not export_available():  # a core install: no [serve] extra
            del factories["onnx"], factories["onnx-int8"]
        elif not int8_passed(cache.get()):
            del factories["onnx-int8"]
    return AutoBackend(factories, batch_sizes=batch_sizes,
                       timings_file=cache.get().path("timings.json"), machine=machine,
                       example=seeded_pixels(inputs, TIMED_BATCH_CAP),
                       exact=set(factories) - {"onnx-int8"})
