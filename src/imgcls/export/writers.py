"""Export a model file to ONNX or TorchScript, and check the export against the original.

Both exports take float pixels in 0..255, [N, C, H, W] with a dynamic batch N, and return
class probabilities [N, K]: the normalization statistics and the softmax are baked into the
graph, so a consumer only has to decode and resize (to_uint8_chw's recipe). An ONNX file has a
second output, `familiarity` [N] (logsumexp of the logits as trained), which the card's trust record
compares with its threshold to answer "none of my classes"; the first output is unchanged
for a consumer that reads only it. The imgcls
metadata travels inside: ONNX `metadata_props` (key `imgcls`, plus `class_names`, `input`
and `normalization` on their own for other tools), TorchScript's extra file `imgcls.json`.

ONNX uses torch's torch.export-based exporter (`dynamo=True`, the default since torch 2.9
and available from 2.5; it needs onnxscript): the legacy TorchScript exporter cannot export
LeNet's adaptive pooling. Opset 18 is what that exporter emits natively; onnxruntime >= 1.14
runs it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.data.normalize import Normalizer
from imgcls.errors import UserError
from imgcls.export.formats import FORMATS, SUFFIXES
from imgcls.modelfile.artifact import load_model
from imgcls.modelfile.card import ModelCard
from imgcls.modelfile.rundir import resolve_model_path

OPSET = 18
INPUT_NAME, OUTPUT_NAME, FAMILIARITY_NAME = "pixels", "probabilities", "familiarity"
ONNX_OUTPUTS = [OUTPUT_NAME, FAMILIARITY_NAME]
_EXAMPLE_BATCH = 2  # traced with 2, not 1, so no exporter specializes the batch axis to 1


class PixelsToProbabilities(nn.Module):
    """The network with its preprocessing and softmax: what an exported file computes."""

    def __init__(self, model: nn.Module, normalization: dict[str, Any], *,
                 familiarity: bool = True, familiarity_scale: float = 1.0) -> None:
        super().__init__()
        self.normalizer = Normalizer(normalization)
        self.model = model
        self.familiarity = familiarity  # False: probabilities alone (TorchScript's contract)
        self.familiarity_scale = familiarity_scale  # ModelCard.familiarity_scale

    def forward(self, pixels: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(self.normalizer(pixels))
        if not self.familiarity:
            return logits.softmax(dim=1)
        return logits.softmax(dim=1), (logits * self.familiarity_scale).logsumexp(dim=1)


def export_model(model_path: str | Path, format: str, output: str | Path | None = None) -> Path:
    """Write `model_path` as `format`; returns the written file."""
    if format not in FORMATS:
        raise UserError(f"--format {format!r} is not one of {', '.join(FORMATS)}")
    model, card = load_model(model_path)
    wrapped = PixelsToProbabilities(model, card.normalization, familiarity=format == "onnx",
                                    familiarity_scale=card.familiarity_scale).eval()
    target = Path(output) if output else default_output(model_path, format)
    target.parent.mkdir(parents=True, exist_ok=True)
    example = example_pixels(card, _EXAMPLE_BATCH)
    document = {**card.to_header(), "export": export_note(format)}
    if format == "onnx":
        _export_onnx(wrapped, example, target, document)
    else:
        _export_torchscript(wrapped, example, target, document)
    return target


def default_output(model_path: str | Path, format: str) -> Path:
    source = resolve_model_path(model_path)
    return source.with_suffix("").with_name(source.stem + SUFFIXES[format])


def export_note(format: str) -> dict[str, Any]:
    """What the exported graph expects, for whoever reads the embedded metadata."""
    return {"format": format, "input": INPUT_NAME, "input_range": [0, 255],
            "layout": "NCHW", "normalization_in_graph": True, "output": OUTPUT_NAME,
            **({"familiarity": FAMILIARITY_NAME} if format == "onnx" else {})}


def example_pixels(card: ModelCard, batch: int) -> torch.Tensor:
    return torch.rand(batch, *card.input.chw) * 255


def _export_onnx(wrapped: nn.Module, example: torch.Tensor, target: Path,
                 document: dict[str, Any]) -> None:
    import onnx

    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter, not the user's
        program = torch.onnx.export(
            wrapped, (example,), dynamo=True, opset_version=OPSET, verbose=False,
            input_names=[INPUT_NAME], output_names=ONNX_OUTPUTS,
            dynamic_shapes=({0: batch},),
        )
    proto = program.model_proto
    properties = {"imgcls": json.dumps(document),
                  **{key: json.dumps(document[key])
                     for key in ("class_names", "input", "normalization")}}
    for key, value in properties.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save_model(proto, str(target))


def _export_torchscript(wrapped: nn.Module, example: torch.Tensor, target: Path,
                        document: dict[str, Any]) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit's deprecation warning
        traced = torch.jit.trace(wrapped, example)
        torch.jit.save(traced, str(target), _extra_files={"imgcls.json": json.dumps(document)})


def parity_images(card: ModelCard, samples: int, data: str | None,
                  data_dir: str | None = None) -> tuple[torch.Tensor, str]:
    """Up to `samples` images for the parity check, and what they are: the first test
    images of `data` (a folder, CSV or built-in name) or, without data, seeded noise."""
    channels, size = card.input.channels, card.input.size
    if data is None:
        generator = torch.Generator().manual_seed(0)
        noise = torch.randint(0, 256, (samples, channels, size, size), generator=generator)
        return noise.to(torch.uint8), "random images"
    from imgcls.data.decode import decode_arrays
    from imgcls.data.sources import load_source

    # Loaded at its own format, so only the chosen images are converted to the model's.
    dataset = load_source(data, data_dir=data_dir)
    order = list(range(len(dataset.images)))
    if dataset.preset_split is not None:  # test images first, where the source has them
        order.sort(key=lambda index: dataset.preset_split[index] != "test")
    chosen = order[:samples]
    test_only = dataset.preset_split is not None and all(
        dataset.preset_split[i] == "test" for i in chosen)
    hwc = dataset.images[chosen].permute(0, 2, 3, 1).numpy()
    arrays = hwc[..., 0] if hwc.shape[-1] == 1 else hwc
    images = decode_arrays(arrays, channels=channels, size=size)
    return images, f"{data} {'test ' if test_only else ''}images"
