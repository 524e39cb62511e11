"""What every backend offers, and what one is built from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from torch import nn

from imgcls.data.normalize import Normalizer
from imgcls.modelfile.card import ModelCard
from imgcls.runtime import RuntimeChoice


class Backend(Protocol):
    """numpy in and out, so an onnxruntime session (export/session.py, OnnxRunner) is one
    as it stands; the torch backends convert at their edge (Outputs.to_numpy)."""

    name: str

    def outputs(self, pixels: np.ndarray,
                batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities [N, K] and familiarity [N] (float32; None: an export without it)
        for uint8 (or 0..255 float) pixels [N, C, H, W]."""
        ...


@dataclass(frozen=True)
class BackendInputs:
    """A loaded model file: what any backend can be built from."""

    model_file: Path  # the model.safetensors the ONNX files are exported from
    model: nn.Module  # placed by `runtime` (device, memory format), in eval mode
    card: ModelCard
    runtime: RuntimeChoice
    normalizer: Normalizer
