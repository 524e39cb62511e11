"""A PNG grid that shows what an augmentation does: one row per sample, the original first."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import save_image

# Tiny images (8 px digits, 28 px Fashion-MNIST) are scaled up to at least this side.
MIN_SIDE = 64


def write_preview(
    images: torch.Tensor,
    augment: nn.Module,
    output: Path,
    *,
    samples: int = 8,
    variants: int = 4,
    seed: int = 0,
) -> Path:
    """Write a grid of the first `samples` uint8 images [N, C, H, W] and `variants` augmented
    versions of each to `output` (PNG); returns the path. The global RNG is left untouched."""
    originals = images[:samples]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        versions = [_to_unit(augment(originals)) for _ in range(variants)]
    # [rows, 1 + variants, C, H, W] -> row-major tiles, so each grid row is one sample.
    tiles = torch.stack([_to_unit(originals), *versions], dim=1).flatten(0, 1)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_image(_upscale(tiles), output, nrow=1 + variants, padding=2, pad_value=1.0)
    return output


def _to_unit(batch: torch.Tensor) -> torch.Tensor:
    """uint8 or float 0..255 -> float in [0, 1] on the CPU."""
    return (batch.detach().float().cpu() / 255).clamp(0, 1)


def _upscale(tiles: torch.Tensor) -> torch.Tensor:
    factor = math.ceil(MIN_SIDE / min(tiles.shape[-2:]))
    # Nearest keeps the pixels visible as pixels: the point is to see what the model sees.
    return F.interpolate(tiles, scale_factor=factor, mode="nearest") if factor > 1 else tiles
