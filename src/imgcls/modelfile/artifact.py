"""The model file: one `model.safetensors` holding the weights and, in its header, a JSON
document that describes everything needed to use them. Loading never unpickles."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from imgcls.errors import UserError
from imgcls.modelfile.card import ModelCard
from imgcls.modelfile.rundir import resolve_model_path
from imgcls.utils.files import atomic_path
from imgcls.version import __version__

METADATA_KEY = "imgcls"


def versions() -> dict[str, str]:
    return {
        "imgcls": __version__,
        "torch": torch.__version__,
        # From its installed metadata: importing torchvision takes ~2 s that loading a model
        # for prediction should not pay.
        "torchvision": metadata.version("torchvision"),
    }


def save_model(path: str | Path, model: nn.Module, card: ModelCard) -> None:
    """Write weights + the card atomically; the card's versions are this process's."""
    document = replace(card, versions=versions()).to_header()
    # safetensors wants contiguous, unshared tensors; channels_last weights are neither.
    tensors = {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in model.state_dict().items()
    }
    _unfold_temperature(model, card, tensors)
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={METADATA_KEY: json.dumps(document)})


def read_card(path: str | Path) -> ModelCard:
    file = model_file(path)
    try:
        with safe_open(str(file), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{file} is not a safetensors model file ({error})") from None
    if METADATA_KEY not in header:
        raise UserError(f"{file} has no imgcls metadata; it was not written by imgcls")
    return ModelCard.from_header(json.loads(header[METADATA_KEY]), origin=str(file))


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_file(path)), device="cpu")


def build_network(card: ModelCard) -> nn.Module:
    """The card's network, untrained."""
    from imgcls.models import create_model

    return create_model(card.architecture.name, **card.architecture.kwargs)


def load_model(path: str | Path) -> tuple[nn.Module, ModelCard]:
    """The network with its weights, in eval mode, and its card."""
    card = read_card(path)
    model = build_network(card)
    model.load_state_dict(read_weights(path))
    if card.trust is not None:
        fold_temperature(model, card.model_name, card.trust.temperature)
    return model.eval(), card


def fold_temperature(model: nn.Module, model_name: str, temperature: float) -> None:
    """Divide the head's weights and bias by the card's temperature: the network's logits
    are then the calibrated ones, for every backend and export alike, with no extra step. The
    file keeps the weights as trained (training and --init-from read those); the network
    remembers the fold, so save_model writes it back as trained."""
    from imgcls.models import get_spec

    head = model.get_submodule(get_spec(model_name).head)
    with torch.no_grad():
        head.weight.div_(temperature)
        if head.bias is not None:
            head.bias.div_(temperature)
    model.folded_temperature = temperature  # type: ignore[assignment]


def _unfold_temperature(model: nn.Module, card: ModelCard,
                        tensors: dict[str, torch.Tensor]) -> None:
    """The head's tensors as trained, for a network load_model folded a temperature into: a
    loaded model saved again must not be divided twice when loaded."""
    folded = getattr(model, "folded_temperature", None)
    if folded is None:
        return
    from imgcls.models import get_spec

    head = get_spec(card.model_name).head
    for name in (f"{head}.weight", f"{head}.bias"):
        if name in tensors:
            tensors[name] = tensors[name] * folded


def model_file(path: str | Path) -> Path:
    """The existing model file `path` names: the file itself, or a run directory's."""
    file = resolve_model_path(path)
    if not file.is_file():
        raise UserError(f"model file {file} does not exist; pass a run's model.safetensors")
    return file
