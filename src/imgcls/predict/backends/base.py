"""What every backend offers, and what one is built from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from imgcls.data.normalize import Normalizer
from imgcls.modelfile.card import ModelCard
from imgcls.predict.inference import Outputs
from imgcls.runtime import RuntimeChoice


class Backend(Protocol):
    name: str

    def outputs(self, images: torch.Tensor, batch_size: int) -> Outputs:
        """Probabilities [N, K] and familiarity [N] (float32, CPU) for uint8 (or 0..255
        float) pixels."""
        ...


@dataclass(frozen=True)
class BackendInputs:
    """A loaded model file: what any backend can be built from."""

    model_file: Path  # the model.safetensors the ONNX files are exported from
    model: nn.Module  # placed by `runtime` (device, memory format), in eval mode
    card: ModelCard
    runtime: RuntimeChoice
    normalizer: Normalizer
