"""Batched forward passes over uint8 images: the one path that training's final
evaluation, `imgcls eval` and the Predictor share, so their numbers agree."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from imgcls.data.normalize import Normalizer
from imgcls.runtime import autocast


class Outputs(NamedTuple):
    """What a network's logits give a prediction, float32 on the CPU."""

    probabilities: torch.Tensor  # [N, K] softmax
    familiarity: torch.Tensor  # [N] logsumexp of the logits as trained: low for none of the classes

    @classmethod
    def of_logits(cls, logits: torch.Tensor, familiarity_scale: float = 1.0) -> Outputs:
        """`familiarity_scale`: the card's (ModelCard.familiarity_scale), which undoes the
        temperature folded into the network for the score."""
        logits = logits.float()
        return cls(logits.softmax(dim=1).cpu(),
                   (logits * familiarity_scale).logsumexp(dim=1).cpu())

    @classmethod
    def from_numpy(cls, probabilities: Any, familiarity: Any | None) -> Outputs:
        """A backend's numpy answer (an OnnxRunner's, say) as tensors sharing its memory; an
        export from before the familiarity output gives NaN there, which no threshold turns
        away."""
        count = len(probabilities)
        return cls(torch.from_numpy(probabilities),
                   torch.full((count,), float("nan")) if familiarity is None
                   else torch.from_numpy(familiarity))

    def to_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """As a backend answers (predict/backends/base.py): numpy arrays sharing the memory."""
        return self.probabilities.numpy(), self.familiarity.numpy()

    @classmethod
    def joined(cls, parts: list[Outputs]) -> Outputs:
        if not parts:
            return cls(torch.empty(0, 0), torch.empty(0))
        return cls(torch.cat([part.probabilities for part in parts]),
                   torch.cat([part.familiarity for part in parts]))


def predict_probabilities(model: nn.Module, normalizer: Normalizer, images: torch.Tensor,
                          **options: Any) -> torch.Tensor:
    """Softmax probabilities [N, K] (float32, on the CPU); options as predict_logits'."""
    return predict_logits(model, normalizer, images, **options).softmax(dim=1)


def predict_outputs(model: nn.Module, normalizer: Normalizer, images: torch.Tensor, *,
                    familiarity_scale: float = 1.0, **options: Any) -> Outputs:
    """Probabilities and familiarity; options as predict_logits'."""
    return Outputs.of_logits(predict_logits(model, normalizer, images, **options),
                             familiarity_scale)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    normalizer: Normalizer,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Logits [N, K] (float32, on the CPU) for uint8 images [N, C, H, W].
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
        outputs.append(logits.float().cpu())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, 0)
