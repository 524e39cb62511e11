"""Augmentation: every flag does something when on and nothing when off, per sample; the
crop+flip gather gives shifted copies; MixUp/CutMix labels match the mixing; presets; preview."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from imgcls.data.augment import (
    PRESETS,
    AugmentConfig,
    BatchAugment,
    RandomShiftFlip,
    RandomWarp,
    augment_batch,
    build_augment,
    mix_batch,
    preset,
)
from imgcls.data.preview import write_preview
from imgcls.errors import UserError

# One config per flag, at a strength that must visibly change an image (probability 1).
SINGLE_FLAGS = {
    "resized_crop": AugmentConfig(resized_crop=0.35),
    "shift": AugmentConfig(shift=0.1),
    "rotate": AugmentConfig(rotate=30.0),
    "hflip": AugmentConfig(hflip=1.0),
    "vflip": AugmentConfig(vflip=1.0),
    "brightness": AugmentConfig(brightness=0.5),
    "contrast": AugmentConfig(contrast=0.5),
    "saturation": AugmentConfig(saturation=0.8),
    "hue": AugmentConfig(hue=0.3),
    "noise": AugmentConfig(noise=0.1),
    "erase": AugmentConfig(erase=1.0),
    "randaugment": AugmentConfig(auto="randaugment"),
    "trivialaugment": AugmentConfig(auto="trivialaugment"),
}
COLOR_ONLY = {"saturation", "hue"}  # no meaning for one channel


def _images(count: int, channels: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth, asymmetric uint8 images that no flip, shift or color op leaves as they are."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, channels, 4, 4, generator=generator)
    smooth = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (40 + 170 * smooth).round().to(torch.uint8)


def _augment(config: AugmentConfig, channels: int, size: int = 16) -> BatchAugment:
    return BatchAugment(config, image_size=size, channels=channels)


# --- the crop + flip gather ------------------------------------------------------------------

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
    augment = RandomShiftFlip(padding=2, hflip=0.5)
    out = augment(batch)
    assert out.shape == batch.shape
    for image, result in zip(batch, out, strict=True):
        assert any(torch.equal(result, c) for c in _candidates(image, 2, hflip=True))
    identical = sum(torch.equal(a, b) for a, b in zip(batch, out, strict=True))
    assert identical < 16  # per-sample randomness: most images moved


def test_no_flip_when_the_data_forbids_it() -> None:
    torch.manual_seed(1)
    batch = torch.rand(32, 1, 10, 10)
    out = RandomShiftFlip(padding=1, hflip=0.0)(batch)
    for image, result in zip(batch, out, strict=True):
        assert any(torch.equal(result, c) for c in _candidates(image, 1, hflip=False))


def test_vflip_always_flips_rows() -> None:
    batch = torch.rand(8, 1, 6, 6)
    assert torch.equal(RandomShiftFlip(padding=0, vflip=1.0)(batch), batch.flip(-2))


def test_default_preset_keeps_its_tuned_shift() -> None:
    for size, padding in ((28, 1), (32, 2), (224, 14), (8, 1)):
        augment = build_augment(preset("default", hflip_ok=True), image_size=size, channels=1)
        assert augment.shift_flip.padding == padding
        assert augment.shift_flip.hflip == 0.5
        assert len(augment.float_ops) == 0  # pure gather: uint8 in, uint8 out


# --- every flag: on changes the batch, per sample; off is identity -------------------------

@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("flag", sorted(SINGLE_FLAGS))
def test_each_flag_changes_the_batch_per_sample(flag: str, channels: int) -> None:
    torch.manual_seed(2)
    augment = _augment(SINGLE_FLAGS[flag], channels)
    if channels == 1 and flag in COLOR_ONLY:
        batch = _images(4, channels)
        assert torch.equal(augment(batch), batch)  # ignored, not a crash
        return
    one_image = _images(1, channels).expand(32, -1, -1, -1).contiguous()
    out = augment(one_image)
    assert out.shape == one_image.shape
    assert out.dtype in (torch.uint8, torch.float32)
    assert 0 <= float(out.min()) and float(out.max()) <= 255
    changed = (out.float() - one_image.float()).abs().flatten(1).amax(dim=1) > 0.5
    assert changed.any(), f"{flag} left every sample unchanged"
    if flag not in ("hflip", "vflip"):  # probability 1 flips are the same for all, by design
        distinct = {tuple(sample.flatten().tolist()) for sample in out.float().round()}
        assert len(distinct) > 1, f"{flag} gave every sample the same transform"


@pytest.mark.parametrize("channels", [1, 3])
def test_all_off_is_exactly_identity(channels: int) -> None:
    batch = _images(8, channels)
    assert isinstance(build_augment(AugmentConfig(), image_size=16, channels=channels),
                      torch.nn.Identity)
    assert torch.equal(_augment(AugmentConfig(), channels)(batch), batch)
    assert augment_batch(build_augment(AugmentConfig(), image_size=16, channels=channels),
                         batch) is batch


@pytest.mark.parametrize("channels", [1, 3])
def test_everything_on_keeps_shape_and_range_for_uint8_and_float(channels: int) -> None:
    config = AugmentConfig(
        resized_crop=0.35, shift=0.1, rotate=20, hflip=0.5, vflip=0.5, brightness=0.3,
        contrast=0.3, saturation=0.3, hue=0.1, noise=0.1, erase=0.5, auto="trivialaugment",
    )
    augment = _augment(config, channels)
    for batch in (_images(16, channels), _images(16, channels).float()):
        out = augment(batch)
        assert out.shape == batch.shape and out.dtype == torch.float32
        assert 0 <= float(out.min()) and float(out.max()) <= 255
        assert torch.isfinite(out).all()


def test_resized_crop_stays_inside_the_image_and_rotation_fills_corners() -> None:
    torch.manual_seed(3)
    ones = torch.ones(16, 1, 15, 15)
    cropped = RandomWarp(min_scale=0.35)(ones)
    assert torch.allclose(cropped, ones, atol=1e-5)  # never samples outside the source
    rotated = RandomWarp(degrees=45)(ones)
    assert torch.allclose(rotated[:, :, 7, 7], torch.ones(16), atol=1e-5)  # centre stays
    assert (rotated[:, :, 0, 0] < 0.99).sum() > 8  # corners come from outside: zero fill


# --- MixUp / CutMix -----------------------------------------------------------------------

def _identifiable_batch(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is the constant 10 * i and has label i, so a pixel tells whose it is."""
    labels = torch.arange(count)
    images = (10.0 * labels).view(-1, 1, 1, 1).expand(-1, 1, 12, 12).contiguous()
    return images, labels


def test_mixup_images_and_labels_are_the_same_blend() -> None:
    torch.manual_seed(4)
    images, labels = _identifiable_batch(16)
    mixed = mix_batch(images, labels, 16, mixup_alpha=0.4, cutmix_alpha=0.0)
    w, partner = mixed.weight.view(-1, 1, 1, 1), mixed.partner
    assert not mixed.cut.any()
    assert torch.allclose(mixed.images, w * images + (1 - w) * images[partner])
    own, other = F.one_hot(labels, 16).float(), F.one_hot(labels[partner], 16).float()
    assert torch.allclose(mixed.targets, w.view(-1, 1) * own + (1 - w.view(-1, 1)) * other)
    # The label-weighted class value reproduces every mixed pixel.
    expected = (mixed.targets * 10.0 * torch.arange(16)).sum(dim=1)
    assert torch.allclose(mixed.images[:, 0, 0, 0], expected, atol=1e-4)
    assert torch.allclose(mixed.targets.sum(dim=1), torch.ones(16))
    assert len(set(mixed.weight.tolist())) > 1  # each sample draws its own lam


def test_cutmix_label_weight_is_the_pasted_area() -> None:
    torch.manual_seed(5)
    images, labels = _identifiable_batch(32)
    mixed = mix_batch(images, labels, 32, mixup_alpha=0.0, cutmix_alpha=1.0)
    assert mixed.cut.all()
    for index in range(32):
        partner = int(mixed.partner[index])
        if partner == index:
            continue
        image = mixed.images[index, 0]
        pasted = (image == 10.0 * partner).float().mean()
        assert set(image.unique().tolist()) <= {10.0 * index, 10.0 * partner}
        assert mixed.targets[index, partner] == pytest.approx(float(pasted), abs=1e-6)
        assert mixed.targets[index, index] == pytest.approx(1 - float(pasted), abs=1e-6)
    assert torch.allclose(mixed.targets.sum(dim=1), torch.ones(32))


def test_mix_with_both_picks_one_per_sample_and_off_gives_one_hot() -> None:
    torch.manual_seed(6)
    images, labels = _identifiable_batch(64)
    both = mix_batch(images, labels, 64, mixup_alpha=0.4, cutmix_alpha=1.0)
    assert 0 < int(both.cut.sum()) < 64
    augment = _augment(AugmentConfig(mixup=0.2), channels=1, size=12)
    assert torch.equal(augment(images), images)  # mixing lives in mix(), not forward()
    mixed_images, targets = augment.mix(images, labels, 64)
    assert targets.shape == (64, 64) and not torch.equal(mixed_images, images)
    plain = _augment(AugmentConfig(hflip=0.5), channels=1, size=12)
    same_images, one_hot = plain.mix(images, labels, 64)
    assert torch.equal(same_images, images)
    assert torch.equal(one_hot, F.one_hot(labels, 64).float())


# --- presets and errors -------------------------------------------------------------------

def test_presets_resolve_and_build() -> None:
    assert set(PRESETS) == {"none", "light", "default", "strong"}
    for name in PRESETS:
        for channels in (1, 3):
            config = preset(name, hflip_ok=True)
            augment = build_augment(config, image_size=28, channels=channels)
            assert augment(_images(4, channels, size=28)).shape == (4, channels, 28, 28)
    assert preset("light", hflip_ok=True) == AugmentConfig(shift=1 / 16)
    assert preset("default", hflip_ok=True) == AugmentConfig(shift=1 / 16, hflip=0.5)


def test_hflip_ok_false_forces_hflip_off_and_overrides_apply() -> None:
    assert preset("default", hflip_ok=False).hflip == 0.0
    assert preset("strong", hflip_ok=False, hflip=0.5).hflip == 0.0
    config = preset("light", hflip_ok=True, mixup=0.2, auto="trivialaugment")
    assert (config.mixup, config.auto, config.shift) == (0.2, "trivialaugment", 1 / 16)


def test_user_errors_name_the_choices() -> None:
    with pytest.raises(UserError, match="none, light, default, strong"):
        preset("heavy", hflip_ok=True)
    with pytest.raises(UserError, match="unknown augmentation setting.*jitter"):
        preset("default", hflip_ok=True, jitter=0.1)
    with pytest.raises(UserError, match="trivialaugment"):
        preset("default", hflip_ok=True, auto="autoaugment")
    with pytest.raises(UserError, match="hflip"):
        preset("default", hflip_ok=True, hflip=1.5)
    assert {f.name for f in fields(AugmentConfig)} >= {"mixup", "cutmix", "erase", "auto"}


# --- preview ------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_preview_writes_the_grid(tmp_path, channels: int) -> None:
    images = _images(10, channels, size=28)
    augment = build_augment(preset("strong", hflip_ok=True), image_size=28, channels=channels)
    state = torch.random.get_rng_state()
    path = write_preview(images, augment, tmp_path / "sub" / "preview.png", samples=3, variants=4)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    side = 28 * 3  # upscaled by 3 to reach 64 px; make_grid pads 2 px around each tile
    with Image.open(path) as picture:
        assert picture.size == (5 * (side + 2) + 2, 3 * (side + 2) + 2)

