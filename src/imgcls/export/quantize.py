"""int8 static quantization of the fp32 ONNX file with onnxruntime: QDQ format, weights
per output channel in 7 bits (`reduce_range`), activations' ranges calibrated on training images.

Why 7-bit weights: on x86-64 without VNNI (AVX2, and AVX512 before Cascade Lake) onnxruntime's
uint8 x int8 kernels add products in pairs into saturating 16-bit lanes (`vpmaddubsw`), so a
pair of large products clips; VNNI and aarch64 add in 32 bits. With weights in [-64, 64] a pair
is at most 2 * 255 * 64 = 32,640 < 32,767, so no CPU's kernels clip and an int8 model answers
the same everywhere. onnxruntime's quantization guide names this remedy (and uint8 weights,
which measured slower). bench/int8_schemes.py, digits LeNet-5 (3 epochs) on an AVX2 CPU
(`qemu-x86_64 -cpu EPYC-Rome`): 8-bit weights 92.2% top-1 agreement with fp32, 7-bit 100%.

Only the convolutions and matrix products are quantized, where the time goes: the softmax
stays fp32 (its output are the probabilities; uint8 would round them to steps of 1/255), and
so does the normalization at the graph's input.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from imgcls.export.writers import INPUT_NAME
from imgcls.utils.files import atomic_path

CALIBRATION_BATCH = 32
# What the int8 check records, so a reader knows which quantization its numbers are for.
SCHEME = "QDQ; uint8 activations (MinMax); int8 weights per channel in 7 bits (reduce_range)"


def quantize_int8(fp32: Path, target: Path, calibration: torch.Tensor) -> Path:
    """Write the int8 model of `fp32` to `target`, calibrated on uint8 `calibration` images."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    with atomic_path(target) as temporary, _quiet_root_warnings():
        quantize_static(
            str(fp32), str(temporary), _reader(calibration),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
            op_types_to_quantize=["Conv", "Gemm", "MatMul"],
            calibrate_method=CalibrationMethod.MinMax,
        )
    return target


@contextmanager
def _quiet_root_warnings() -> Iterator[None]:
    """onnxruntime.quantization logs "Please consider to run pre-processing" on the root
    logger for every model (its shape inference; our graph has static shapes but the batch):
    noise in `imgcls export --quantize int8`'s output, which prints the check that matters."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _reader(images: torch.Tensor):
    """A CalibrationDataReader over `images` in batches (built here: onnxruntime's class is
    imported only when quantizing)."""
    from onnxruntime.quantization import CalibrationDataReader

    class PixelBatches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(images.split(CALIBRATION_BATCH))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch.float().numpy()}

    return PixelBatches()
