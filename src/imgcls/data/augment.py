"""Batched, per-sample random augmentation on the training device (kornia).

Each image in a batch draws its own crop offset and flip, on whatever device the batch is
on, so augmentation never goes back through per-image Python code.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

AUGMENT_PRESETS = ("none", "default")


def build_augment(preset: str, *, image_size: int, hflip_ok: bool) -> nn.Module:
    """The augmentation for a preset; works on float batches [N, C, H, W] in any value range."""
    if preset == "none":
        return nn.Identity()
    if preset != "default":
        raise ValueError(f"unknown augmentation preset {preset!r}")
    # Padding of 1/8 of the side: the classic CIFAR recipe (4 px at 32 px).
    padding = max(1, image_size // 8)
    steps: list[nn.Module] = [K.RandomCrop((image_size, image_size), padding=padding)]
    if hflip_ok:
        steps.append(K.RandomHorizontalFlip())
    return nn.Sequential(*steps)


def augment_batch(augment: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Apply `augment` keeping the batch's memory format (kornia returns contiguous)."""
    if isinstance(augment, nn.Identity):
        return batch
    channels_last = batch.is_contiguous(memory_format=torch.channels_last) and batch.shape[1] > 1
    augmented = augment(batch)
    return augmented.contiguous(memory_format=torch.channels_last) if channels_last else augmented
