"""The fp32 ONNX file an `onnx` backend runs: export.py's graph (normalization and softmax
inside, dynamic batch), written by whichever exporter is faster for this network.

torch's legacy TorchScript-based exporter takes ~0.1 of the time of the torch.export-based one
(resnet18 0.7 s against 8 s, densenet121 2.3 s against 29 s, 1 thread), which matters when
the first `--backend onnx` load, or the end of a training run, pays for it. It refuses adaptive
pooling to a size that does not divide the input (LeNet at 32 px pools 6 -> 5), so such a
pool whose windows are all alike is exported as the AvgPool2d it equals; a network it still
refuses goes through export.py's exporter.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import torch
from torch import nn

from imgcls.export.writers import (
    INPUT_NAME,
    ONNX_OUTPUTS,
    OPSET,
    PixelsToProbabilities,
    example_pixels,
    export_model,
    export_note,
)
from imgcls.modelfile.artifact import load_model
from imgcls.utils.extras import available
from imgcls.utils.files import atomic_path


def export_available() -> bool:
    """Whether the [serve] extra's onnx and onnxruntime import: exports, and the backends
    that run them, need both."""
    return available("onnx", "onnxruntime")


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
    model = uniform_pools_as_avgpool(model.eval(), torch.zeros(1, *card.input.chw))
    wrapped = PixelsToProbabilities(model, card.normalization,
                                    familiarity_scale=card.familiarity_scale).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            wrapped, (example_pixels(card, 2),), str(target), dynamo=False,
            opset_version=OPSET, input_names=[INPUT_NAME], output_names=ONNX_OUTPUTS,
            dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *ONNX_OUTPUTS)},
        )
    proto = onnx.load(str(target))
    document = {**card.to_header(), "export": export_note("onnx")}
    proto.metadata_props.add(key="imgcls", value=json.dumps(document))
    onnx.save_model(proto, str(target))


def uniform_pools_as_avgpool(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """`model` with each AdaptiveAvgPool2d whose windows share one size and one stride on
    `example`'s shapes replaced by that AvgPool2d: the same function, which the legacy
    exporter can write."""
    shapes: dict[str, tuple[int, int]] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            shapes[name] = (args[0].shape[-2], args[0].shape[-1])
        return hook

    hooks = [module.register_forward_pre_hook(record(name))
             for name, module in model.named_modules() if isinstance(module, nn.AdaptiveAvgPool2d)]
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    for name, (height, width) in shapes.items():
        pool = model.get_submodule(name)
        output_size = pool.output_size
        wanted = output_size if isinstance(output_size, tuple) else (output_size, output_size)
        windows = [_uniform_window(size, out or size)
                   for size, out in zip((height, width), wanted, strict=True)]
        if None not in windows:
            parent, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent), attribute,
                    nn.AvgPool2d(tuple(w[0] for w in windows), tuple(w[1] for w in windows)))
    return model


def _uniform_window(size: int, out: int) -> tuple[int, int] | None:
    """(kernel, stride) when adaptive pooling of `size` to `out` uses one window size at one
    stride (its windows run from floor(i*size/out) to ceil((i+1)*size/out)); else None."""
    starts = [i * size // out for i in range(out)]
    lengths = {-(-(i + 1) * size // out) - start for i, start in enumerate(starts)}
    strides = {b - a for a, b in pairwise(starts)} or {1}
    if len(lengths) != 1 or len(strides) != 1:
        return None
    return lengths.pop(), strides.pop()
