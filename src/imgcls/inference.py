"""Batched forward passes over uint8 images: the one path that training's final
evaluation, `imgcls eval` and the Predictor share, so their numbers agree."""

from __future__ import annotations

import torch
from torch import nn

from imgcls.data.normalize import Normalizer
from imgcls.training.runtime import autocast


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    normalizer: Normalizer,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Softmax probabilities [N, K] (float32, on the CPU) for uint8 images [N, C, H, W]."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    channels_last = _is_channels_last(model)
    outputs = []
    for chunk in images.split(batch_size):
        batch = normalizer(chunk.to(device, non_blocking=True))
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(device, dtype):
            logits = model(batch)
        outputs.append(logits.float().softmax(dim=1).cpu())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


def _is_channels_last(model: nn.Module) -> bool:
    weight = next((p for p in model.parameters() if p.ndim == 4), None)
    return weight is not None and weight.is_contiguous(memory_format=torch.channels_last) and (
        not weight.is_contiguous()
    )
