"""The fp32 ONNX file an `onnx` backend runs: export.py's graph (normalization and softmax
inside, dynamic batch), written by whichever exporter is faster for this network.

torch's legacy TorchScript-based exporter takes ~0.1 of the time of the torch.export-based one
(resnet18 0.7 s against 8 s, densenet121 2.3 s against 29 s, 1 thread), which matters when
the first `--backend onnx` load pays for it; it cannot export LeNet's adaptive pooling, so a
network it refuses goes through export.py's exporter.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from imgcls.artifact import load_model
from imgcls.export import (
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    PixelsToProbabilities,
    example_pixels,
    export_model,
    export_note,
)
from imgcls.files import atomic_path


def write_fp32_onnx(model_file: Path, target: Path) -> Path:
    """Export `model_file` to `target` (atomically); returns `target`."""
    try:
        with atomic_path(target) as temporary:
            _legacy_export(model_file, temporary)
    except Exception:  # the legacy exporter's many unsupported-operator errors
        with atomic_path(target) as temporary:
            export_model(model_file, "onnx", temporary)
    return target


def _legacy_export(model_file: Path, target: Path) -> None:
    import onnx

    model, card = load_model(model_file)
    wrapped = PixelsToProbabilities(model, card.normalization).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            wrapped, (example_pixels(card, 2),), str(target), dynamo=False,
            opset_version=OPSET, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    proto = onnx.load(str(target))
    document = {**card.to_header(), "export": export_note("onnx")}
    proto.metadata_props.add(key="imgcls", value=json.dumps(document))
    onnx.save_model(proto, str(target))
