"""Inference backends: the same model file run as eager torch, as torch with BatchNorm folded
into the convolutions, as a frozen TorchScript graph, or under onnxruntime (fp32, or int8
after `imgcls export --quantize int8` passed its accuracy check). `auto` times them on this
machine at the batch sizes in use and runs the fastest (see auto.py).

The Predictor opens one with `open_backend`; ONNX files and timings are cached beside the
model file, keyed by its sha256 (cache.py). Nothing here imports the CLI or training.
"""

from imgcls.backends.base import Backend, BackendInputs
from imgcls.backends.choose import BACKENDS, DEFAULT_BATCH_SIZES, open_backend

__all__ = ["BACKENDS", "DEFAULT_BATCH_SIZES", "Backend", "BackendInputs", "open_backend"]
