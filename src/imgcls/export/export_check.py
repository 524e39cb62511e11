"""Which CPU kinds a model file's cached fp32 export was checked on, and the check itself.

The export is held to eager torch's probabilities within PARITY_TOLERANCE wherever torch
opens it (choose.check_parity, auto's timing). A prediction that runs the export without
torch (cached_onnx.py) cannot ask torch, so the first check stores its pixels and torch's
probabilities (`fp32.check.npz`) and the CPU kinds it held on (`fp32.checked.json`); on a CPU
of another kind the export runs those pixels once, torch-free, and is trusted there only if
it still agrees. Torch-free.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np

from imgcls.errors import UserError
from imgcls.export.cache import BackendCache
from imgcls.utils.cpus import cpu_kind
from imgcls.utils.files import atomic_path, write_json

PARITY_TOLERANCE = 1e-4  # of probabilities against eager fp32 (int8 is checked on export)


def record_parity(cache: BackendCache, pixels: np.ndarray, expected: np.ndarray) -> None:
    """The export agreed with eager torch on `pixels` here: keep them, and this CPU kind."""
    reference = cache.path("fp32.check.npz")
    if not reference.is_file():
        with atomic_path(reference) as temporary, open(temporary, "wb") as stream:
            np.savez(stream, pixels=pixels, probabilities=expected)
    _add_kind(cache, cpu_kind())


def checked_here(cache: BackendCache, *, threads: int) -> bool:
    """Whether the export holds on this CPU's kind: checked here before, or now on the stored
    pixels (recorded). False where nothing is stored to check with: torch checks it then."""
    if cpu_kind() in _kinds(cache):
        return True
    try:
        with np.load(cache.path("fp32.check.npz"), allow_pickle=False) as stored:
            pixels, expected = stored["pixels"], stored["probabilities"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # none, or damaged
        return False
    from imgcls.export.session import OnnxRunner

    try:
        answer = OnnxRunner(cache.path("fp32.onnx"), threads=threads).probabilities(pixels)
    except UserError:
        return False  # a damaged export: the torch path says so and rebuilds it
    if answer.shape != expected.shape or np.abs(answer - expected).max() > PARITY_TOLERANCE:
        return False
    _add_kind(cache, cpu_kind())
    return True


def _kinds(cache: BackendCache) -> list[str]:
    try:
        kinds = json.loads(cache.path("fp32.checked.json").read_text()).get("cpu_kinds", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [kind for kind in kinds if isinstance(kind, str)]


def _add_kind(cache: BackendCache, kind: str) -> None:
    kinds = _kinds(cache)
    if kind not in kinds:
        write_json(cache.path("fp32.checked.json"), {"cpu_kinds": [*kinds, kind]})
