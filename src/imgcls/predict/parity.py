"""The export's parity check: the original model (the torch Predictor, fp32, CPU) and the
exported file on the same images. Here, not in export/: it runs the Predictor, whose backends
export ONNX files themselves, so export/ stays below predict/ in the imports."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from imgcls.predict.predictor import Predictor

# The largest |probability difference| an fp32 export may show: float32 rounding, well
# below any difference that could change an answer.
PARITY_LIMIT = 1e-4


@dataclass
class Parity:
    samples: int
    source: str  # what the check images were
    max_abs_difference: float  # of probabilities, over all samples and classes
    top1_agreement: float  # fraction of samples with the same top-1 class

    @property
    def holds(self) -> bool:
        """The export gives every image the model's top class, within PARITY_LIMIT."""
        return self.top1_agreement >= 1 and self.max_abs_difference <= PARITY_LIMIT

    def describe(self) -> str:
        agreeing = round(self.top1_agreement * self.samples)
        return (f"parity on {self.samples} {self.source}: max |probability difference| "
                f"{self.max_abs_difference:.2e}, top-1 agreement {agreeing}/{self.samples} "
                f"({self.top1_agreement:.2%})")


def check_parity(model_path: str | Path, exported: str | Path, images: torch.Tensor,
                 source: str) -> Parity:
    """Probabilities of the original (torch, fp32, CPU) and the export on the same images."""
    reference = Predictor(model_path, device="cpu").probabilities(images)
    if Path(exported).suffix == ".onnx":
        candidate = Predictor(exported).probabilities(images)
    else:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            candidate = torch.jit.load(str(exported))(images.float())
    difference = (reference - candidate).abs().max().item()
    agreement = (reference.argmax(1) == candidate.argmax(1)).float().mean().item()
    return Parity(len(images), source, difference, agreement)
