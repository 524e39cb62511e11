"""Per-channel normalization statistics, computed on the train split only.

The statistics travel in the model file, so prediction applies exactly what training did.
Both modes work on pixels scaled to [0, 1]:
  meanstd: (x - mean) / std        minmax: (x - min) / (max - min)
"""

from __future__ import annotations

import torch

# Keeps a constant channel (std 0, or max == min) from dividing by zero.
_EPSILON = 1e-6


def compute_stats(images: torch.Tensor, mode: str) -> dict:
    """Statistics of uint8 images [N, C, H, W] in the form the model file stores."""
    if mode == "meanstd":
        mean, std = _mean_std(images)
        return {"mode": "meanstd", "mean": mean, "std": std}
    if mode == "minmax":
        per_channel = images.transpose(0, 1).reshape(images.shape[1], -1)
        low = (per_channel.amin(dim=1).double() / 255).tolist()
        high = (per_channel.amax(dim=1).double() / 255).tolist()
        return {"mode": "minmax", "min": low, "max": high}
    raise ValueError(f"unknown normalization mode {mode!r}")


def _mean_std(images: torch.Tensor) -> tuple[list[float], list[float]]:
    # Accumulate in float64 chunks: exact enough for 60k images without a 60k-image float copy.
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for chunk in images.split(4096):
        values = chunk.transpose(0, 1).reshape(channels, -1).double() / 255
        total += values.sum(dim=1)
        total_sq += (values * values).sum(dim=1)
    count = images.numel() / channels
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return mean.tolist(), std.tolist()


def scale_and_shift(stats: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel with normalized = pixel_uint8 * scale + shift."""
    if stats["mode"] == "meanstd":
        low, spread = torch.tensor(stats["mean"]), torch.tensor(stats["std"])
    else:
        low = torch.tensor(stats["min"])
        spread = torch.tensor(stats["max"]) - low
    spread = spread.clamp_min(_EPSILON)
    return (1 / (255 * spread)).float(), (-low / spread).float()


class Normalizer(torch.nn.Module):
    """uint8 or [0, 255] float batch [N, C, H, W] -> normalized float batch."""

    def __init__(self, stats: dict) -> None:
        super().__init__()
        scale, shift = scale_and_shift(stats)
        self.register_buffer("scale", scale.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, -1, 1, 1), persistent=False)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.float() * self.scale + self.shift
