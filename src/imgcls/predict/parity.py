"""The export's parity check: the original model (the torch Predictor, fp32, CPU) and the
exported file on the same images. Apart from export.py because it runs the Predictor, whose
backends export ONNX files themselves: export.py stays below predict.py in the imports."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from imgcls.predict.predictor import Predictor


@dataclass
class Parity:
    samples: int
    source: str  # what the check images were
    max_abs_difference: float  # of probabilities, over all samples and classes
    top1_agreement: float  # fraction of samples with the same top-1 class

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
