"""Batched forward passes over uint8 images: the one path that training's final
evaluation, `imgcls eval` and the Predictor share, so their numbers agree."""

from __future__ import annotations

import torch
from torch import nn

from imgcls.data.normalize import Normalizer
from imgcls.runtime import autocast


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    normalizer: Normalizer,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Softmax probabilities [N, K] (float32, on the CPU) for uint8 images [N, C, H, W].
    `channels_last`: the memory format the model's weights are in (RuntimeChoice's), which
    the batches are given too."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
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

