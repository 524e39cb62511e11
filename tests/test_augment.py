"""The default augmentation: every output is a shifted (and maybe mirrored) copy of its input."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imgcls.data.augment import RandomShiftFlip, build_augment


def _candidates(image: torch.Tensor, padding: int, hflip: bool) -> list[torch.Tensor]:
    """Every crop (and mirrored crop) the augmentation may produce from one image."""
    height, width = image.shape[-2:]
    padded = F.pad(image, (padding,) * 4)
    crops = [padded[:, top:top + height, left:left + width]
             for top in range(2 * padding + 1) for left in range(2 * padding + 1)]
    return crops + [crop.flip(-1) for crop in crops] if hflip else crops


def test_each_sample_is_a_shifted_copy_and_samples_differ() -> None:
    torch.manual_seed(0)
    batch = torch.rand(64, 3, 12, 12)
    augment = RandomShiftFlip(padding=2, hflip=True)
    out = augment(batch)
    assert out.shape == batch.shape
    for image, result in zip(batch, out, strict=True):
        assert any(torch.equal(result, c) for c in _candidates(image, 2, hflip=True))
    identical = sum(torch.equal(a, b) for a, b in zip(batch, out, strict=True))
    assert identical < 16  # per-sample randomness: most images moved


def test_no_flip_when_the_data_forbids_it() -> None:
    torch.manual_seed(1)
    batch = torch.rand(32, 1, 10, 10)
    out = RandomShiftFlip(padding=1, hflip=False)(batch)
    for image, result in zip(batch, out, strict=True):
        assert any(torch.equal(result, c) for c in _candidates(image, 1, hflip=False))


def test_none_preset_is_identity() -> None:
    batch = torch.rand(4, 1, 28, 28)
    assert torch.equal(build_augment("none", image_size=28, hflip_ok=True)(batch), batch)
    assert build_augment("default", image_size=32, hflip_ok=True).padding == 2
