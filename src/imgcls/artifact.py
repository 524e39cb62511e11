"""The model file: one `model.safetensors` holding the weights and, in its header, a JSON
document that describes everything needed to use them. Loading never unpickles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torchvision
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from imgcls.errors import UserError
from imgcls.io import atomic_path

FORMAT_VERSION = 1
METADATA_KEY = "imgcls"


def versions() -> dict[str, str]:
    from imgcls import __version__

    return {
        "imgcls": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }


def save_model(path: str | Path, model: nn.Module, metadata: dict[str, Any]) -> None:
    """Write weights + metadata atomically. `metadata` follows DESIGN.md's schema."""
    document = {"format_version": FORMAT_VERSION, **metadata, "versions": versions()}
    # safetensors wants contiguous, unshared tensors; channels_last weights are neither.
    tensors = {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in model.state_dict().items()
    }
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={METADATA_KEY: json.dumps(document)})


def read_metadata(path: str | Path) -> dict[str, Any]:
    file = _existing_model_file(path)
    try:
        with safe_open(str(file), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{file} is not a safetensors model file ({error})") from None
    if METADATA_KEY not in header:
        raise UserError(f"{file} has no imgcls metadata; it was not written by imgcls")
    document = json.loads(header[METADATA_KEY])
    if document.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(
            f"{file} uses model-file format {document['format_version']}; "
            f"this imgcls reads up to {FORMAT_VERSION}: upgrade imgcls"
        )
    return document


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(_existing_model_file(path)), device="cpu")


def build_from_metadata(metadata: dict[str, Any]) -> nn.Module:
    from imgcls.models import create_model

    architecture = metadata["architecture"]
    return create_model(architecture["name"], **architecture["kwargs"])


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The network with its weights, in eval mode, and the metadata."""
    metadata = read_metadata(path)
    model = build_from_metadata(metadata)
    model.load_state_dict(read_weights(path))
    return model.eval(), metadata


def _existing_model_file(path: str | Path) -> Path:
    file = Path(path)
    if file.is_dir():
        file = file / "model.safetensors"
    if not file.is_file():
        raise UserError(f"model file {file} does not exist; pass a run's model.safetensors")
    return file
