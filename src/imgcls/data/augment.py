"""Batched, per-sample random augmentation on the training device.

Every augmentation is a field of AugmentConfig holding its strength (0 / "none" is off).
Each image in a batch draws its own parameters, on whatever device the batch is on, so
augmentation never goes back through per-image Python code. Crop, flip and the geometric
warp are hand-written (measured faster than kornia's, see their docstrings); color jitter,
noise, erasing and the automatic policies are kornia's (imported only when switched on).

Batches come in as uint8 or float [N, C, H, W] in 0..255 and go out the same shape in
0..255: uint8 stays uint8 when only crop/flip are on, anything else returns float32.
MixUp/CutMix (`BatchAugment.mix`) run apart from `forward` because they also change labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.errors import UserError

AUTO_POLICIES = ("none", "randaugment", "trivialaugment")


@dataclass
class AugmentConfig:
    """Every field a strength; 0 / "none" means off."""

    resized_crop: float = 0.0  # min area scale of a random resized crop (0 = off, e.g. 0.35)
    shift: float = 0.0  # max translation as a fraction of the side (crop with zero padding)
    rotate: float = 0.0  # max rotation, degrees either way
    hflip: float = 0.0  # probability of a horizontal flip
    vflip: float = 0.0  # probability of a vertical flip
    brightness: float = 0.0  # color jitter strengths, as torchvision/kornia ColorJitter
    contrast: float = 0.0
    saturation: float = 0.0  # 3 channels only; ignored for grayscale
    hue: float = 0.0  # 3 channels only, at most 0.5; ignored for grayscale
    noise: float = 0.0  # Gaussian noise std, in units of the 0..1 pixel range
    erase: float = 0.0  # probability of erasing one random rectangle
    auto: str = "none"  # "none" | "randaugment" | "trivialaugment"
    mixup: float = 0.0  # MixUp alpha: lam ~ Beta(alpha, alpha) (0 = off)
    cutmix: float = 0.0  # CutMix alpha (0 = off)

    def validate(self) -> AugmentConfig:
        for name in ("resized_crop", "hflip", "vflip", "erase"):
            _require(0 <= getattr(self, name) <= 1, f"augment {name} must be in [0, 1]")
        for name in ("rotate", "brightness", "contrast", "saturation", "noise", "mixup", "cutmix"):
            _require(getattr(self, name) >= 0, f"augment {name} must be >= 0")
        _require(0 <= self.shift < 0.5, "augment shift must be in [0, 0.5)")
        _require(0 <= self.hue <= 0.5, "augment hue must be in [0, 0.5]")
        _require(
            self.auto in AUTO_POLICIES,
            f"unknown augment auto {self.auto!r}; choose one of: {', '.join(AUTO_POLICIES)}",
        )
        return self

    @property
    def mixing(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    @property
    def is_off(self) -> bool:
        return self == AugmentConfig()


PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),
    "light": AugmentConfig(shift=1 / 16),
    # Shifts of up to 1/16 of the side (1 px at 28, 2 at 32, 14 at 224): CIFAR's classic 1/8
    # regularizes short runs too hard. Measured on Fashion-MNIST, LeNet-5, 5 epochs of AdamW:
    # test accuracy 0.894 at 1 px, 0.885 at 2 px, 0.877 at 3 px, 0.896 with no augmentation.
    "default": AugmentConfig(shift=1 / 16, hflip=0.5),
    # For long runs of big networks; no MixUp/CutMix: they need soft-label training and many
    # epochs to pay off, so they stay an explicit choice.
    "strong": AugmentConfig(
        resized_crop=0.35, hflip=0.5, rotate=15.0,
        brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, erase=0.25,
    ),
}


def preset(name: str, *, hflip_ok: bool, **overrides: Any) -> AugmentConfig:
    """A preset with some fields overridden; hflip_ok=False (e.g. digits) forces hflip off."""
    if name not in PRESETS:
        raise UserError(
            f"unknown augmentation preset {name!r}; --augment takes one of: {', '.join(PRESETS)}"
        )
    known = {field.name for field in fields(AugmentConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(
            f"unknown augmentation setting(s) {', '.join(unknown)}; "
            f"known settings: {', '.join(sorted(known))}"
        )
    config = replace(PRESETS[name], **overrides)
    if not hflip_ok:
        config = replace(config, hflip=0.0)
    return config.validate()


class RandomShiftFlip(nn.Module):
    """Random crop with zero padding (a translation of up to `padding` px) and horizontal /
    vertical flips with probabilities `hflip` / `vflip`, drawn per sample, as one gather over
    the batch; keeps the batch's dtype.

    Hand-written rather than kornia's RandomCrop + RandomHorizontalFlip: measured on this
    2-core CPU for a 128 x 1 x 28 x 28 batch, kornia's crop takes 1.54 ms (it slices sample by
    sample) against 0.38 ms here for crop and flip together; kornia's crop alone was 13% of a
    LeNet-5 training step.
    """

    def __init__(self, padding: int, hflip: float = 0.0, vflip: float = 0.0) -> None:
        super().__init__()
        self.padding = padding
        self.hflip = hflip
        self.vflip = vflip

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        count, channels, height, width = batch.shape
        device, span = batch.device, 2 * self.padding + 1
        padded = F.pad(batch, (self.padding,) * 4) if self.padding else batch
        top = torch.randint(0, span, (count, 1), device=device)
        left = torch.randint(0, span, (count, 1), device=device)
        rows = _maybe_reversed(top + torch.arange(height, device=device), self.vflip)
        cols = _maybe_reversed(left + torch.arange(width, device=device), self.hflip)
        return padded[
            torch.arange(count, device=device).view(count, 1, 1, 1),
            torch.arange(channels, device=device).view(1, channels, 1, 1),
            rows.view(count, 1, height, 1),
            cols.view(count, 1, 1, width),
        ]


def _maybe_reversed(indices: torch.Tensor, probability: float) -> torch.Tensor:
    """Each row of `indices` [N, L] reversed with `probability` (a flip along that axis)."""
    if probability <= 0:
        return indices
    flipped = torch.rand(len(indices), 1, device=indices.device) < probability
    return torch.where(flipped, indices.flip(1), indices)


class RandomWarp(nn.Module):
    """Random resized crop (area scale in [min_scale, 1], aspect ratio in [3/4, 4/3]) and
    rotation (up to `degrees` either way), per sample, fused into one affine grid_sample on
    float [0, 1] images (zero fill outside the source).

    Hand-written rather than kornia's RandomResizedCrop + RandomRotation: measured by
    bench/augment_cost.py on a shared 2-core EPYC for a 128 x 1 x 28 x 28 batch, kornia's pair
    took 4.5 ms against 1.2 ms here with a LeNet-5 step at 10.2 ms (quiet machine), and
    32.8 ms against 9.8 ms with the step at 104 ms (busy machine, 40 interleaved rounds).
    """

    def __init__(self, min_scale: float = 1.0, degrees: float = 0.0) -> None:
        super().__init__()
        self.min_scale = min_scale if min_scale > 0 else 1.0
        self.degrees = degrees

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        theta = self.sample_theta(len(batch), batch.shape[-2:], batch.device)
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)

    def sample_theta(
        self, count: int, size: tuple[int, int], device: torch.device
    ) -> torch.Tensor:
        """[N, 2, 3] maps from output to input coordinates in [-1, 1]."""

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.empty(count, device=device).uniform_(low, high)

        area = uniform(self.min_scale, 1.0)
        aspect = uniform(math.log(3 / 4), math.log(4 / 3)).exp()
        # Half-sides of the crop as fractions of the image; the crop stays inside it.
        half_w = (area * aspect).sqrt().clamp(max=1.0)
        half_h = (area / aspect).sqrt().clamp(max=1.0)
        # Outermost samples land at most on the outermost pixel centres (1 - 1/side), so a crop
        # never blends in the zero fill.
        height, width = size
        center_x = uniform(-1, 1) * (1 - half_w) * (1 - 1 / width)
        center_y = uniform(-1, 1) * (1 - half_h) * (1 - 1 / height)
        angle = uniform(-1, 1) * math.radians(self.degrees)
        cos, sin = angle.cos(), angle.sin()
        row_x = torch.stack([half_w * cos, -half_w * sin, center_x], dim=1)
        row_y = torch.stack([half_h * sin, half_h * cos, center_y], dim=1)
        return torch.stack([row_x, row_y], dim=1)


class AutoPolicy(nn.Module):
    """kornia's RandAugment (n=2, m=9, timm's rand-m9-n2) or TrivialAugment on [0, 1] images.

    kornia picks one operation sequence per call (magnitudes per sample), so the batch is
    split into `groups` parts that each draw their own; the trainer's batches are already in
    random order. RandAugment's color ops need 3 channels: a grayscale batch goes through as
    gray RGB and comes back as the channel mean (exact for gray input, as every op keeps
    R = G = B). TrivialAugment's policy has no color op and takes 1 channel directly.
    """

    def __init__(self, kind: str, channels: int, groups: int = 4) -> None:
        super().__init__()
        from kornia.augmentation import auto

        self.policy = auto.RandAugment(n=2, m=9) if kind == "randaugment" else auto.TrivialAugment()
        self.as_rgb = kind == "randaugment" and channels == 1
        self.groups = groups

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = batch.expand(-1, 3, -1, -1) if self.as_rgb else batch
        outputs = torch.cat([self.policy(part) for part in inputs.chunk(self.groups)])
        return outputs.mean(dim=1, keepdim=True) if self.as_rgb else outputs


class GaussianNoise(nn.Module):
    """Add N(0, std^2) per pixel, clamped back to [0, 1] (kornia's noise does not clamp)."""

    def __init__(self, std: float) -> None:
        super().__init__()
        from kornia.augmentation import RandomGaussianNoise

        self.noise = RandomGaussianNoise(mean=0.0, std=std, p=1.0)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.noise(batch).clamp(0, 1)


class BatchAugment(nn.Module):
    """Every switched-on augmentation of an AugmentConfig, applied per sample to whole batches."""

    def __init__(self, config: AugmentConfig, *, image_size: int, channels: int) -> None:
        super().__init__()
        self.config = config.validate()
        self.image_size = image_size
        self.channels = channels
        self.shift_flip = _shift_flip(config, image_size)
        self.float_ops = nn.Sequential(*_float_ops(config, channels))

    @property
    def mixing(self) -> bool:
        return self.config.mixing

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.shift_flip is not None:
            images = self.shift_flip(images)  # on uint8 when given: a quarter of the bytes
        if len(self.float_ops) == 0:
            return images
        # kornia's ops want float in [0, 1]; back to 0..255 for the normalizer.
        return self.float_ops(images.float() / 255) * 255

    def mix(
        self, images: torch.Tensor, labels: torch.Tensor, num_classes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MixUp/CutMix: (float images, soft labels [N, K]); one-hot labels when both are off."""
        mixed = mix_batch(images, labels, num_classes,
                          mixup_alpha=self.config.mixup, cutmix_alpha=self.config.cutmix)
        return mixed.images, mixed.targets


def _shift_flip(config: AugmentConfig, image_size: int) -> RandomShiftFlip | None:
    if config.shift == 0 and config.hflip == 0 and config.vflip == 0:
        return None
    # Whole pixels, at least one when asked for: floor keeps the tuned default (1 px at 28).
    padding = max(1, int(image_size * config.shift)) if config.shift > 0 else 0
    return RandomShiftFlip(padding=padding, hflip=config.hflip, vflip=config.vflip)


def _float_ops(config: AugmentConfig, channels: int) -> list[nn.Module]:
    """The ops that work on float [0, 1], in order: geometry, policy, color, noise, erasing."""
    ops: list[nn.Module] = []
    if config.resized_crop > 0 or config.rotate > 0:
        ops.append(RandomWarp(min_scale=config.resized_crop, degrees=config.rotate))
    if config.auto != "none":
        ops.append(AutoPolicy(config.auto, channels))
    color = _color_jitter(config, channels)
    if color is not None:
        ops.append(color)
    if config.noise > 0:
        ops.append(GaussianNoise(config.noise))
    if config.erase > 0:
        from kornia.augmentation import RandomErasing

        ops.append(RandomErasing(p=config.erase, value=0.0))
    return ops


def _color_jitter(config: AugmentConfig, channels: int) -> nn.Module | None:
    # Saturation and hue have no meaning for one channel (kornia would raise on them).
    saturation, hue = (config.saturation, config.hue) if channels == 3 else (0.0, 0.0)
    if config.brightness == 0 and config.contrast == 0 and saturation == 0 and hue == 0:
        return None
    from kornia.augmentation import ColorJitter

    return ColorJitter(config.brightness, config.contrast, saturation, hue, p=1.0)


@dataclass
class Mixed:
    """A mixed batch: images[i] is images[i] blended with images[partner[i]], and targets[i]
    gives weight[i] to labels[i] and 1 - weight[i] to labels[partner[i]]."""

    images: torch.Tensor
    targets: torch.Tensor
    weight: torch.Tensor
    partner: torch.Tensor
    cut: torch.Tensor  # True where the sample was CutMix-ed, False where MixUp-ed


def mix_batch(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
    mixup_alpha: float, cutmix_alpha: float,
) -> Mixed:
    """MixUp (blend with lam ~ Beta(alpha, alpha)) and CutMix (paste a box of area 1 - lam),
    per sample: each sample draws its own partner and lam, and, with both on, picks one of the
    two at 1/2. CutMix's label weight is the box area actually pasted (boxes are clipped).

    Hand-written rather than kornia's RandomMixUpV2 / RandomCutMixV2: kornia draws MixUp's lam
    uniformly (there is no alpha) and returns (label, partner label, lam) triples, not soft
    labels. Measured by bench/augment_cost.py for 128 x 1 x 28 x 28 on a busy 2-core EPYC,
    kornia's CutMix took 22.1 ms against 4.0 ms here (a LeNet-5 step: 104 ms).
    """
    count, _, height, width = images.shape
    device = images.device
    images = images.float()
    own = F.one_hot(labels, num_classes).float()
    weight = torch.ones(count, device=device)
    partner = torch.arange(count, device=device)
    cut = torch.zeros(count, dtype=torch.bool, device=device)
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return Mixed(images, own, weight, partner, cut)
    partner = torch.randperm(count, device=device)
    if mixup_alpha > 0 and cutmix_alpha > 0:
        cut = torch.rand(count, device=device) < 0.5
    elif cutmix_alpha > 0:
        cut = torch.ones(count, dtype=torch.bool, device=device)
    others = images[partner]
    if mixup_alpha > 0:
        weight = _beta(mixup_alpha, count, device)
        blended = _view4(weight) * images + _view4(1 - weight) * others
        images = torch.where(_view4(cut), images, blended) if cutmix_alpha > 0 else blended
    if cutmix_alpha > 0:
        box = _random_boxes(_beta(cutmix_alpha, count, device), height, width) & _view4(cut)
        images = torch.where(box, others, images)
        pasted_fraction = box.flatten(1).float().mean(dim=1)
        weight = torch.where(cut, 1 - pasted_fraction, weight)
    targets = weight[:, None] * own + (1 - weight[:, None]) * own[partner]
    return Mixed(images, targets, weight, partner, cut)


def _beta(alpha: float, count: int, device: torch.device) -> torch.Tensor:
    concentration = torch.full((count,), float(alpha), device=device)
    return torch.distributions.Beta(concentration, concentration).sample()


def _random_boxes(lam: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Masks [N, 1, H, W]: a box of area ~(1 - lam) per sample at a uniform centre, clipped."""
    count, device = len(lam), lam.device
    side = (1 - lam).sqrt()
    center_y = torch.rand(count, device=device) * height
    center_x = torch.rand(count, device=device) * width
    top = (center_y - side * height / 2).round().clamp(0, height)
    bottom = (center_y + side * height / 2).round().clamp(0, height)
    left = (center_x - side * width / 2).round().clamp(0, width)
    right = (center_x + side * width / 2).round().clamp(0, width)
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    inside_rows = (rows >= top.view(-1, 1, 1)) & (rows < bottom.view(-1, 1, 1))
    inside_cols = (cols >= left.view(-1, 1, 1)) & (cols < right.view(-1, 1, 1))
    return (inside_rows & inside_cols).unsqueeze(1)


def _view4(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def build_augment(config: AugmentConfig, *, image_size: int, channels: int) -> nn.Module:
    """The augmentation for a config; nn.Identity when everything is off."""
    if config.is_off:
        return nn.Identity()
    return BatchAugment(config, image_size=image_size, channels=channels)


def augment_batch(augment: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Apply `augment` keeping the batch's memory format (indexing returns contiguous)."""
    if isinstance(augment, nn.Identity):
        return batch
    channels_last = batch.is_contiguous(memory_format=torch.channels_last) and batch.shape[1] > 1
    augmented = augment(batch)
    return augmented.contiguous(memory_format=torch.channels_last) if channels_last else augmented


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)
