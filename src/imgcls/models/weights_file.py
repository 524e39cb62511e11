"""A local state-dict file (--pretrained PATH, or torchvision's cached download), read after
the checks that make a bad file a one-line error: its sha256 against the prefix its name
carries, damage (a file cut short), and pickled Python objects (never unpickled). A training
checkpoint is read as timm's load_checkpoint reads one: the weights under "state_dict" or
"model" (torchvision's reference scripts), without DDP's "module." or torch.compile's
"_orig_mod." prefix.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import safetensors.torch
import torch
from torch import Tensor

from imgcls.errors import UserError

# torchvision names its weights files as torch.hub expects, "<name>-<sha256 prefix>.pth":
# resnet18-f37072fd.pth is a file whose sha256 starts with f37072fd (hub's check_hash).
HASHED_NAME = re.compile(r"^(?P<stem>.+)-(?P<sha256_prefix>[0-9a-f]{8,64})\.pth$")
_CHUNK = 1 << 20


def read_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """A state dict from .safetensors, or from .pt/.pth read with weights_only (no unpickling).
    A file named `<name>-<sha256 prefix>.pth` must have that sha256 first."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"pretrained weights: {path} is a folder, not a weights file — pass the"
                        " .pth, .pt or .safetensors file inside it")
    if not path.is_file():
        raise UserError(f"pretrained weights file not found: {path} — check the --pretrained path")
    if path.suffix not in (".safetensors", ".pt", ".pth"):
        raise UserError(
            f"cannot read weights from {path}: expected a .safetensors, .pt or .pth file"
        )
    check_named_sha256(path)
    loaded = _load_safetensors(path) if path.suffix == ".safetensors" else _load_torch(path)
    state_dict = _weights_of(loaded)
    if state_dict is None:
        raise UserError(
            f"{path} does not hold a state dict of tensors — save it with"
            " torch.save(model.state_dict(), path)"
        )
    return state_dict


# Where training checkpoints keep the weights: timm's and Lightning's "state_dict",
# torchvision's reference scripts' "model" (beside "optimizer", "epoch", "args"...).
CHECKPOINT_KEYS = ("state_dict", "model")
# Prefixes a wrapper adds to every name: DistributedDataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _weights_of(loaded: object) -> dict[str, Tensor] | None:
    """The state dict in what a file held: itself, or a checkpoint's weights, unwrapped."""
    if not _is_state_dict(loaded) and isinstance(loaded, Mapping):
        loaded = next((loaded[key] for key in CHECKPOINT_KEYS
                       if _is_state_dict(loaded.get(key))), None)
    if not _is_state_dict(loaded) or not loaded:
        return None
    state_dict = dict(loaded)
    for prefix in WRAPPER_PREFIXES:
        if all(name.startswith(prefix) for name in state_dict):
            state_dict = {name[len(prefix):]: value for name, value in state_dict.items()}
    return state_dict


def named_sha256_prefix(path: Path) -> str | None:
    """The start of the sha256 that the file's name promises, if it is named as torchvision's."""
    match = HASHED_NAME.match(path.name)
    return match["sha256_prefix"] if match else None


def check_named_sha256(path: Path) -> None:
    expected = named_sha256_prefix(path)
    if expected is None:
        return
    actual = file_sha256(path)[: len(expected)]
    if actual != expected:
        raise UserError(
            f"{path}: its name says its sha256 starts with {expected} (torchvision's"
            f" <name>-<sha256 prefix>.pth) but it starts with {actual}: the file is damaged, cut"
            " short or another file — delete it and download it again (or rename it, if the"
            " digits in its name are not a hash)"
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _load_torch(path: Path) -> object:
    try:
        # torchvision's reference checkpoints keep their argparse options beside the weights:
        # a Namespace holds only attributes, and anything else in it is still refused.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's weights-only unpickler names what it refused: "Unsupported global: ..."
        if "Unsupported global" not in str(error):
            raise _unreadable(path) from error
        raise UserError(
            f"{path} is not a plain state dict (it holds Python objects that are not loaded for"
            " safety) — save it with torch.save(model.state_dict(), path)"
        ) from error
    except Exception as error:  # a damaged file makes torch.load raise almost anything
        raise _unreadable(path) from error


def _load_safetensors(path: Path) -> object:
    try:
        return safetensors.torch.load_file(str(path))
    except Exception as error:  # safetensors' SafetensorError, and others for odd headers
        raise _unreadable(path) from error


def _unreadable(path: Path) -> UserError:
    return UserError(
        f"cannot read {path} ({path.stat().st_size:,} bytes): the file is damaged, cut short,"
        " or not a saved state dict — download or save it again"
    )


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and all(
        isinstance(key, str) and isinstance(value, Tensor) for key, value in obj.items()
    )
