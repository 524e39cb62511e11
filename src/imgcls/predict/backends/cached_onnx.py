"""The cached fp32 ONNX export a prediction can run without torch.

`--backend onnx` runs it once it exists. `--backend auto` runs it once this machine's stored
timings (made by an earlier auto run, which also held it to eager torch's probabilities
within 1e-4) chose onnx for every batch size in use; where nothing was timed on this machine
yet, it runs it for a prediction of at most UNMEASURED_MAX_BATCH images (the export a
training run cached passed the same parity check, and timing every backend would cost a
one-image prediction many times what it saves). Timings are kept per CPU kind (timing.py);
without them (and for `--backend onnx`) the export runs only where it was checked on a CPU of
this kind, or passes the stored check here now (export_check.py): a check made on another
kind of CPU is not trusted unchecked. Anything else, or no cache yet: None, and the
caller opens the torch Predictor, which builds the cache. Imports neither torch nor the
backends that need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from imgcls.export.cache import cache_for
from imgcls.export.export_check import checked_here
from imgcls.predict.backends.timing import fastest, machine_key, nearest, read_timings

# Untimed, onnxruntime runs predictions of up to this many images: at batch 1 it took 0.12-0.66
# of eager torch's time on every network bench/inference.py measures (lenet5, vgg11_bn,
# resnet18, resnet20; 1 thread, AVX512), and it skips torch's import (several seconds).
UNMEASURED_MAX_BATCH = 16


def cached_onnx(model_file: Path, backend: str, batch_sizes: Sequence[int],
                threads: int) -> Path | None:
    """The export, when `backend` would run it at every one of `batch_sizes`; else None."""
    if backend not in ("onnx", "auto") or model_file.suffix != ".safetensors":
        return None
    try:
        cache = cache_for(model_file)  # hashes the model file: once per call
    except OSError:
        return None  # nowhere to look: the torch path says what is wrong
    export = cache.path("fp32.onnx")
    if not export.is_file():
        return None
    if backend == "auto":
        timings = read_timings(cache.path("timings.json"), machine_key(threads))
        measured = sorted({size for sizes in timings.values() for size in sizes})
        if measured:  # timed on this machine, where auto held it to eager torch's answers
            chosen = {fastest(timings, nearest(measured, max(1, size))) for size in batch_sizes}
            return export if chosen == {"onnx"} else None
        if max(batch_sizes) > UNMEASURED_MAX_BATCH:
            return None
    return export if checked_here(cache, threads=threads) else None
