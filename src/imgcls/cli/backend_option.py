"""`--backend` for predict, eval and serve: how a model.safetensors runs (predict/backends)."""

from __future__ import annotations

import argparse
import os

# The names imgcls.predict.backends.BACKENDS holds, spelled here so that building the parser does
# not import torch and onnx (tests/test_backends.py checks the two agree).
BACKEND_CHOICES = ("auto", "torch", "torch-folded", "torch-jit", "onnx", "onnx-int8")
BACKEND_HELP = ("how the model runs: torch (eager, as trained), torch-folded (BatchNorm folded "
                "in), torch-jit, onnx (onnxruntime; exported once, cached beside the model), "
                "onnx-int8 (after `imgcls export --quantize int8`), or auto: the fastest "
                "measured on this machine")


def add_backend_option(command: argparse.ArgumentParser, *, env: bool = False,
                       default: str = "torch") -> None:
    """`env`: the default may come from IMGCLS_BACKEND (serve's flags all can)."""
    suffix = f" (env IMGCLS_BACKEND; default: {default})" if env else f" (default: {default})"
    default = os.environ.get("IMGCLS_BACKEND", default) if env else default
    command.add_argument("--backend", choices=BACKEND_CHOICES, default=default,
                         help=BACKEND_HELP + suffix)


def add_quantize_options(command: argparse.ArgumentParser) -> None:
    """`imgcls export --quantize int8`: the int8 model `--backend onnx-int8` runs."""
    command.add_argument("--quantize", choices=("int8", "none"),
                         help="int8: write an int8 ONNX model (static quantization, calibrated "
                              "on the training split) into the model's backend cache, after "
                              "checking its accuracy on the test split. With --format web: "
                              "left out, the app ships int8 when that check passes, else fp32; "
                              "int8 ships int8 or refuses (exit 2); none ships fp32")
    command.add_argument("--max-accuracy-drop", type=float, default=1.0, metavar="POINTS",
                         help="refuse the int8 model (exit 2) when its test accuracy is this "
                              "many percentage points below fp32's (default: 1)")
    command.add_argument("--min-agreement", type=float, default=0.98, metavar="FRACTION",
                         help="refuse the int8 model (exit 2) when it gives fp32's top-1 class "
                              "on fewer than this fraction of the test images (default: 0.98)")
