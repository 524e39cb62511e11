"""Model size and cost, for `imgcls models` and the run report."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or frozen."""
    return sum(parameter.numel() for parameter in model.parameters())


def mflops(model: nn.Module, in_channels: int, image_size: int) -> float:
    """Millions of floating-point operations for one forward pass of one image, in eval mode.

    Counted as torch.utils.flop_counter.FlopCounterMode counts: 2 per multiply-add of the
    convolutions, matrix products and linear layers (and attention, which these models lack).
    Activations, pooling, normalization and additions are not counted; they are cheap beside
    the convolutions.
    """
    parameter = next(model.parameters())
    image = torch.zeros(
        1, in_channels, image_size, image_size, dtype=parameter.dtype, device=parameter.device
    )
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(image)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e6
