"""Backends that run the network in torch: as trained (eager), with BatchNorm folded into
the convolutions before it, or as a frozen TorchScript graph.

Measured on resnet18 / vgg11_bn, 32 px, 1 thread (AVX512 EPYC), batch 256: folding alone
0.85x / 0.82x of eager's time; TorchScript freeze + optimize_for_inference (which folds too and
prepacks oneDNN weights) 0.41x / 0.72x, but 1.1-1.2x at batch 1, so both stay candidates and
`auto` picks per batch size. Each takes and gives numpy arrays, as every backend does
(base.py); the tensors share the arrays' memory.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from imgcls.predict.backends.base import BackendInputs
from imgcls.predict.inference import Outputs, predict_outputs


class EagerTorch:
    """The network as trained: the path training's final evaluation shares."""

    name = "torch"

    def __init__(self, inputs: BackendInputs) -> None:
        self.inputs = inputs

    def outputs(self, pixels: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        runtime = self.inputs.runtime
        return predict_outputs(
            self.inputs.model, self.inputs.normalizer, torch.from_numpy(pixels),
            batch_size=batch_size, device=runtime.device, channels_last=runtime.channels_last,
            familiarity_scale=self.inputs.card.familiarity_scale,
        ).to_numpy()


class _PixelsToLogits(nn.Module):
    """Normalization and network in one module, so one graph holds both."""

    def __init__(self, inputs: BackendInputs, model: nn.Module) -> None:
        super().__init__()
        self.normalizer = inputs.normalizer
        self.model = model
        self.channels_last = inputs.runtime.channels_last

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        batch = self.normalizer(pixels)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.model(batch)


class FoldedTorch:
    """BatchNorm folded into the preceding convolution (torch.fx), run under inference_mode."""

    name = "torch-folded"

    def __init__(self, inputs: BackendInputs) -> None:
        self.device = inputs.runtime.device
        self.module = _PixelsToLogits(inputs, place_like(fold_batchnorm(inputs.model), inputs))
        self.scale = inputs.card.familiarity_scale

    def outputs(self, pixels: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        return run_chunks(self.module, pixels, batch_size, self.device, scale=self.scale)


class JitTorch:
    """Traced, frozen and optimize_for_inference'd TorchScript (folds BN, prepacks weights)."""

    name = "torch-jit"

    def __init__(self, inputs: BackendInputs) -> None:
        self.device = inputs.runtime.device
        self.scale = inputs.card.familiarity_scale
        wrapped = _PixelsToLogits(inputs, copy.deepcopy(inputs.model)).eval()
        example = torch.zeros(2, *inputs.card.input.chw, device=self.device)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notices
            self.module = _optimized_if_it_runs(
                lambda: torch.jit.freeze(torch.jit.trace(wrapped, example)), example)

    def outputs(self, pixels: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        # no_grad, not inference_mode: frozen graphs reject inference tensors as inputs.
        with torch.no_grad():
            return run_chunks(self.module, pixels, batch_size, self.device, inference=False,
                              scale=self.scale)


def _optimized_if_it_runs(freeze: Callable[[], torch.jit.ScriptModule],
                          example: torch.Tensor) -> torch.jit.ScriptModule:
    """optimize_for_inference's graph, or a plain frozen one where oneDNN lacks a kernel it
    chose (adaptive pooling to a size that does not divide the input fails only when run).
    Two freezes: optimize_for_inference rewrites the module it is given."""
    optimized = torch.jit.optimize_for_inference(freeze())
    try:
        optimized(example)
    except RuntimeError:
        return freeze()
    return optimized


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval mode) with each Conv->BatchNorm pair as one convolution. A
    network torch.fx cannot trace is returned copied, unfolded: still correct, just slower."""
    model = copy.deepcopy(model).eval()
    try:
        return fuse(model, inplace=True)
    except Exception:  # fx raises assorted errors on untraceable code; folding is optional
        return model


def place_like(model: nn.Module, inputs: BackendInputs) -> nn.Module:
    """`model` on the inputs' device and memory format (fx rebuilds modules contiguous)."""
    return inputs.runtime.place(model)


def run_chunks(module: nn.Module | torch.jit.ScriptModule, pixels: np.ndarray,
               batch_size: int, device: torch.device, *, inference: bool = True,
               scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    outputs = []
    context = torch.inference_mode() if inference else torch.no_grad()
    with context:
        for chunk in torch.from_numpy(pixels).split(max(batch_size, 1)):
            logits = module(chunk.to(device, non_blocking=True).float())
            outputs.append(Outputs.of_logits(logits, scale))
    return Outputs.joined(outputs).to_numpy()
