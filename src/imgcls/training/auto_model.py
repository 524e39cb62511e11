"""--model auto: the network that the data and the time budget allow.

Small images (<= 64 px) train vgg_small, the registry's fastest network per point of accuracy
on them; its width grows with the budget while the budget still buys enough epochs of it, and
shrinks to half where a budget buys under ten epochs of the full width (two minutes on a
2-core CPU; ten without AVX512), down to LeNet-5 where even half the width would not get two
epochs.
Larger images (photos), or --pretrained, start from ImageNet weights when a file is at hand
(auto_pretrained.py), else train the fastest photo network from scratch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from rich.console import Console

from imgcls.config import NO_PRETRAINED, TrainConfig, parse_duration
from imgcls.models import create_model, get_spec
from imgcls.models.layers import is_small_input
from imgcls.models.speed import RandomBatch, Timing
from imgcls.runtime import Requested, resolve
from imgcls.training.auto_pretrained import SCRATCH_MODEL, choose_pretrained

if TYPE_CHECKING:
    from imgcls.training.prepared_data import PreparedData

AUTO = "auto"
SMALL_IMAGE_MODEL = "vgg_small"
# When a budget buys fewer epochs of the narrowest vgg_small than this, LeNet-5 (several times
# faster per image) trains instead: a few epochs of a small net beat a fraction of one of a
# larger net.
TINY_MODEL, MIN_EPOCHS = "lenet5", 2.0
# vgg_small widths, narrowest first, and the epochs a budget must buy of each to choose it.
# Measured on Fashion-MNIST: a wider net needs more epochs to pass a narrower one. On a CPU
# without AVX512 (emulated, bench/avx2.sh), test accuracy: in 2 minutes lenet5 (11 epochs)
# 0.902-0.908, width 0.5 (4 epochs) 0.916; in 10 minutes width 1 (7.5 epochs) 0.934, width
# 0.5 (24 epochs) 0.939.
WIDTH_LADDER: tuple[tuple[float, float], ...] = (
    (0.5, 0.0), (1.0, 10.0), (1.5, 10.0), (2.0, 20.0))
# Narrower than 1, a step's cost falls slower than the square of the width: 3-16 channel
# convolutions run further below the machine's peak. Measured (fp32, AVX2, one thread,
# 1x28x28): width 0.5 trains 3.2x as fast as width 1, 0.75 1.7x; 2^1.7 = 3.2. In bf16 on
# AVX512 width 0.5 gains only 1.7-2x (5,100-6,200 images/s against ~3,100 at 2 threads), so
# there the epochs this estimates for it (and prints) are high: the choice stands, since it
# rests on width 1's epochs, measured, except near the LeNet-5 cut (a budget of ~30 s).
NARROW_COST_EXPONENT = 1.7
# The share of what is left of a budget that goes to training steps (the rest: validation,
# the final evaluation, saving).
TRAINING_SHARE = 0.85
# vgg_small needs this many optimizer steps at any width, whatever the epochs: on digits
# (1,437 training images, 12 steps an epoch at the recipe's batch of 128), 6 epochs (72 steps)
# scored 0.26-0.95 at widths 1 and 1.5 over 2 seeds each, 10 epochs (120 steps) of width 1
# 0.989-0.994 over 4, 12 epochs of width 0.5 0.989-1.0; a 20 s budget chose width 1.5 by
# epochs alone and scored 0.23 where lenet5 scored 0.989.
MIN_STEPS = 150
BATCH_SIZE = 128  # the vgg_small and lenet5 recipes' batch, and TrainConfig's default
# Fine-tuning a whole pretrained network for less than this many epochs loses to training its
# head alone on cached features, which costs one pass over the images (bench/transfer.py).
MIN_FINE_TUNE_EPOCHS = 1.0


@dataclass(frozen=True)
class Choice:
    model: str
    width: float | None
    reason: str


def choose(
    *, image_size: int, channels: int, num_classes: int, train_images: int,
    budget_seconds: float | None, device: torch.device, precision: str,
    batch_size: int = BATCH_SIZE,
) -> Choice:
    if not is_small_input(image_size):
        return Choice(SCRATCH_MODEL, None, f"{image_size} px images, from scratch")
    if budget_seconds is None:
        return Choice(SMALL_IMAGE_MODEL, None, f"{image_size} px images")
    rate = training_rate(SMALL_IMAGE_MODEL, 1.0, image_size=image_size, channels=channels,
                         num_classes=num_classes, device=device, precision=precision)
    full_width_epochs = budget_seconds * TRAINING_SHARE * rate / max(1, train_images)
    steps_per_epoch = math.ceil(max(1, train_images) / batch_size)

    def affordable(width: float) -> float:
        return full_width_epochs / relative_cost(width)

    def enough(width: float, epochs_needed: float) -> bool:
        epochs = affordable(width)
        return epochs >= max(epochs_needed, MIN_EPOCHS) and epochs * steps_per_epoch >= MIN_STEPS

    narrowest = WIDTH_LADDER[0][0]
    if not enough(narrowest, 0.0) and image_size >= get_spec(TINY_MODEL).min_size:
        steps = affordable(narrowest) * steps_per_epoch
        return Choice(TINY_MODEL, None, f"only {affordable(narrowest):.1f} epochs "
                                        f"({steps:.0f} steps) of {SMALL_IMAGE_MODEL} "
                                        f"--width {narrowest:g} fit the budget")
    width = max([candidate for candidate, needed in WIDTH_LADDER if enough(candidate, needed)],
                default=narrowest)
    return Choice(SMALL_IMAGE_MODEL, None if width == 1.0 else width,
                  f"about {affordable(width):.0f} epochs of {train_images:,} images fit the budget")


def relative_cost(width: float) -> float:
    """A vgg_small training step's cost at `width`, relative to width 1."""
    # Wider, cost grows with the square of the width (channels in x channels out).
    return width**2 if width >= 1 else width**NARROW_COST_EXPONENT


def training_rate(
    name: str, width: float, *, image_size: int, channels: int, num_classes: int,
    device: torch.device, precision: str, batch_size: int = 128,
) -> float:
    """Training images/s of a fresh `name` on random data, timed for about a second (a few
    steps alone scatter too much on a busy VM): a rough first measure, before the run
    measures its own steps. The same training step as `imgcls models --bench`."""
    model = create_model(name, num_classes=num_classes, in_channels=channels,
                         image_size=image_size, width=width)
    runtime = resolve(Requested(precision=precision), get_spec(name), device=device)
    batch = RandomBatch.make(batch_size, channels, image_size, num_classes, device,
                             runtime.channels_last)
    return Timing(seconds=1.0).training(batch.place(model), batch, runtime.dtype)


def resolve_auto_model(
    config: TrainConfig, data: PreparedData, device: torch.device, console: Console,
    started: float | None = None,
) -> TrainConfig:
    """`config` with --model auto resolved (config.yaml then records the choice). With a
    --time-budget that began at `started` (time.time()), what is left of it decides."""
    image_set = data.image_set
    budget = parse_duration(config.time_budget) if config.time_budget else None
    if budget is not None and started is not None:  # starting and loading took their share
        budget = max(0.0, budget - (time.time() - started))
    photos = not is_small_input(image_set.image_size)
    if photos or config.pretrained_weights is not None:
        return _resolve_photo_model(config, data, device, console, budget)
    choice = choose(image_size=image_set.image_size, channels=image_set.channels,
                    num_classes=len(image_set.class_names), train_images=len(data.split.train),
                    budget_seconds=budget, device=device, precision=config.precision,
                    batch_size=config.batch_size)
    width = f" --width {choice.width:g}" if choice.width else ""
    console.print(f"model auto: {choice.model}{width} ({choice.reason})")
    return replace(config, model=choice.model, width=config.width or choice.width)


def _resolve_photo_model(
    config: TrainConfig, data: PreparedData, device: torch.device, console: Console,
    budget: float | None,
) -> TrainConfig:
    """Photos, or --pretrained given: a network with ImageNet weights when a file is at hand
    (auto_pretrained), fine-tuned whole unless the budget buys under MIN_FINE_TUNE_EPOCHS of
    that, when only its head trains, on cached features."""
    image_set = data.image_set
    choice = choose_pretrained(config.pretrained, channels=image_set.channels,
                               image_size=image_set.image_size,
                               num_classes=len(image_set.class_names))
    config = replace(config, model=choice.model, pretrained=choice.weights or NO_PRETRAINED)
    console.print(f"model auto: {choice.model} ({choice.reason})")
    if choice.weights is None or budget is None or config.freeze_backbone:
        return config
    rate = training_rate(choice.model, 1.0, image_size=image_set.image_size,
                         channels=image_set.channels, num_classes=len(image_set.class_names),
                         device=device, precision=config.precision,
                         batch_size=config.batch_size)
    epochs = budget * TRAINING_SHARE * rate / max(1, len(data.split.train))
    if epochs >= MIN_FINE_TUNE_EPOCHS:
        return config
    console.print(f"model auto: the budget buys {epochs:.1f} epochs of the whole network;"
                  f" training its head only, on cached features")
    # Unchanging pixels let the head train on cached features.
    augment = config.augment if "augment" in config.given else "none"
    return replace(config, freeze_backbone=True, augment=augment)
