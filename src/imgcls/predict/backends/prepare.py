"""The fp32 ONNX export a finished training run leaves in its model file's backend cache, so
the first `imgcls predict MODEL.safetensors` (--backend auto) answers from onnxruntime without
importing torch: bench/cold_start.py measured 0.3 s and ~80 MB against 7.6 s and 840 MB.

The export is cached only when it gives eager torch's probabilities within 1e-4 (the onnx
backend's own check). Without the [serve] extra (onnx, onnxruntime) nothing is written and
prediction runs under torch as before.
"""

from __future__ import annotations

import time
from pathlib import Path

from imgcls.errors import UserError
from imgcls.export.cache import cache_for
from imgcls.export.onnx_file import export_available


def cache_fp32_export(model_file: Path) -> str | None:
    """Export `model_file` into its cache; a line saying what happened (None: no extra)."""
    if not export_available():
        return None
    from imgcls.predict.predictor import Predictor

    started = time.perf_counter()
    try:
        Predictor(model_file, device="cpu", backend="onnx")  # exports, then checks parity
    except (UserError, RuntimeError, OSError, ValueError) as error:
        cache_for(model_file).path("fp32.onnx").unlink(missing_ok=True)
        return f"no ONNX export cached for fast prediction: {error}"
    return (f"cached an ONNX export for prediction without torch in "
            f"{time.perf_counter() - started:.1f} s")
