"""Inference backends: the same model file run as eager torch, as torch with BatchNorm folded
into the convolutions, as a frozen TorchScript graph, or under onnxruntime (fp32, or int8
after `imgcls export --quantize int8` passed its accuracy check). `auto` times them on this
machine at the batch sizes in use and runs the fastest (see auto.py).

The Predictor opens one with `open_backend`: every backend takes and gives numpy arrays, so an
onnxruntime session (export/session.py) is one as it stands. ONNX files and timings are
cached beside the model file, keyed by its sha256 (cache.py). cached_onnx.py finds a cached
export that a prediction can run without torch. Nothing here imports the CLI or training.
The names below load on first use (PEP 562), so importing cache.py or cached_onnx.py imports
no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BACKENDS", "DEFAULT_BATCH_SIZES", "Backend", "BackendInputs", "open_backend"]


def __getattr__(name: str) -> Any:
    if name in ("Backend", "BackendInputs"):
        from imgcls.predict.backends import base

        return getattr(base, name)
    if name == "DEFAULT_BATCH_SIZES":
        from imgcls.predict.backends import timing

        return timing.DEFAULT_BATCH_SIZES
    if name in ("BACKENDS", "open_backend"):
        from imgcls.predict.backends import choose

        return getattr(choose, name)
    raise AttributeError(f"module 'imgcls.predict.backends' has no attribute {name!r}")
