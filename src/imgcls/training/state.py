"""Resume state (`last.pt`): everything needed to continue a run where it stopped.

Saved with torch.save and read with torch.load(weights_only=True): only tensors and plain
containers go in, so loading never runs pickled code. Written through io.atomic_path: the
previous last.pt stays whole until the new one is on disk (file and folder fsynced).

A checkpoint carries the fingerprint of the settings it was trained with (see
config_fingerprint); resuming compares it with the run's config.yaml, so a last.pt copied
from another run, or a config.yaml edited since, is a UserError rather than a shape error
deep inside load_state_dict.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgcls.config import TrainConfig
from imgcls.errors import UserError
from imgcls.utils.files import atomic_path

# Settings a resumed run may change without invalidating last.pt: how long and where it
# trains, on which machine and how fast; never what the network, data split or optimizer are.
RESUME_MAY_CHANGE = frozenset({
    "epochs", "time_budget", "patience", "output", "save_every_steps", "tensorboard",
    "workers", "threads", "device", "precision", "compile", "channels_last", "deterministic",
    "cache_limit", "data", "data_dir", "split_file",
})
REQUIRED_KEYS = ("position", "model", "optimizer", "schedule", "scaler", "best", "rng")
FINGERPRINT_KEY = "config_fingerprint"


def rng_state() -> dict[str, Any]:
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state((
        "MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
        numpy_state["has_gauss"], numpy_state["gauss"],
    ))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    # random.setstate insists on tuples; a round trip may hand back lists.
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(item) for item in value)
    return value


def config_fingerprint(config: TrainConfig) -> dict[str, str]:
    """The training-relevant settings (all but RESUME_MAY_CHANGE) as JSON, and their hash."""
    settings = {name: value for name, value in config.to_dict().items()
                if name not in RESUME_MAY_CHANGE}
    text = json.dumps(settings, sort_keys=True, default=str)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "settings": text}


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def load_state(path: str | Path, config: TrainConfig | None = None) -> dict[str, Any]:
    """last.pt's state; a UserError naming the file when it is unreadable, not a
    checkpoint, or (given `config`) saved with other training settings."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError) as error:
        raise UserError(f"{path} can't be read as a checkpoint (truncated or damaged: "
                        f"{_first_line(error)}); start a new run, or restore the file from "
                        f"a backup") from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise UserError(f"{path} is not an imgcls checkpoint (no {', '.join(missing)}); "
                        f"resume from the last.pt a run wrote")
    if config is not None:
        _check_fingerprint(path, state, config)
    return state


def _check_fingerprint(path: Path, state: dict[str, Any], config: TrainConfig) -> None:
    saved = state.get(FINGERPRINT_KEY)
    if saved is None:
        return  # written before checkpoints carried one: nothing to compare with
    expected = config_fingerprint(config)
    saved = saved if isinstance(saved, dict) else {}
    if saved.get("sha256") == expected["sha256"]:
        return
    changed = _changed_settings(str(saved.get("settings", "{}")), expected["settings"])
    raise UserError(f"{path} was saved with other training settings than "
                    f"{path.parent / 'config.yaml'} ({changed}); put back the config.yaml "
                    f"that run was trained with, or start a new run")


def _changed_settings(saved_text: str, current_text: str) -> str:
    """'model: lenet5 -> resnet20, lr: ...' for the settings that differ (at most 3 named)."""
    try:
        saved = json.loads(saved_text)
        saved.keys()
    except (ValueError, AttributeError):
        return "its recorded settings are unreadable"
    current = json.loads(current_text)
    names = sorted(name for name in saved.keys() | current.keys()
                   if saved.get(name) != current.get(name))
    shown = [f"{name}: {saved.get(name)!r} in last.pt, {current.get(name)!r} now"
             for name in names[:3]]
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return ", ".join(shown) + more if shown else "their hash differs"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0][:160] if text else "") or type(error).__name__
