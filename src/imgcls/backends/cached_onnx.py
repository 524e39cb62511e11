"""The cached fp32 ONNX export a prediction can run without torch.

`--backend onnx` runs it once it exists; `--backend auto` runs it once this machine's stored
timings (made by an earlier auto run, which also held it to eager torch's probabilities
within 1e-4) chose onnx for the batch size in use. Anything else, or no cache yet: None, and
the caller opens the torch Predictor, which builds the cache. Imports neither torch nor the
backends that need it.
"""

from __future__ import annotations

from pathlib import Path

from imgcls.backends.cache import cache_for
from imgcls.backends.timing import fastest, machine_key, nearest, read_timings


def cached_onnx(model_file: Path, backend: str, batch_size: int, threads: int) -> Path | None:
    if backend not in ("onnx", "auto") or model_file.suffix != ".safetensors":
        return None
    try:
        cache = cache_for(model_file)
    except OSError:
        return None  # nowhere to look: the torch path says what is wrong
    export = cache.path("fp32.onnx")
    if not export.is_file():
        return None
    if backend == "onnx":
        return export
    timings = read_timings(cache.path("timings.json"), machine_key(threads))
    measured = sorted({size for sizes in timings.values() for size in sizes})
    if not measured:
        return None
    chosen = fastest(timings, nearest(measured, max(1, batch_size)))
    return export if chosen == "onnx" else None
