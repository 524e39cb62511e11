"""The work behind `imgcls data stats | split | preview` (cli/data.py parses and prints): load
a source, split it as training would, and compute, write or draw from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # both import torch; the CLI imports this module before it needs torch
    from imgcls.data.imageset import ImageSet
    from imgcls.data.split import Split


@dataclass(frozen=True)
class SourceRequest:
    """A folder, CSV or built-in name, loaded at these settings (None: the source's own)."""

    source: str
    data_dir: str | None = None
    channels: int | None = None
    image_size: int | None = None


@dataclass(frozen=True)
class SplitRequest:
    val: float = 0.1
    test: float = 0.1
    seed: int = 0
    group_by: str | None = None  # a file-name regex whose first group stays together


@dataclass(frozen=True)
class ChannelStats:
    """One channel of the train split, pixels scaled to 0..1."""

    mean: float
    std: float
    min: float
    max: float


@dataclass(frozen=True)
class TrainStats:
    source: str  # the image set's own name for its source
    train_images: int
    channels: list[ChannelStats]


@dataclass(frozen=True)
class SplitSizes:
    train: int
    val: int
    test: int


def load_and_split(source: SourceRequest, split: SplitRequest) -> tuple[ImageSet, Split]:
    """The image set and its train/val/test split, stratified as `imgcls train` makes it."""
    from imgcls.data.sources import load_source
    from imgcls.data.split import split_image_set

    image_set = load_source(source.source, channels=source.channels,
                            image_size=source.image_size, data_dir=source.data_dir)
    return image_set, split_image_set(image_set, val=split.val, test=split.test,
                                      seed=split.seed, group_by=split.group_by)


def train_split_stats(source: SourceRequest, split: SplitRequest) -> TrainStats:
    """Mean/std and min/max per channel of the train split: what normalization would use."""
    import torch

    from imgcls.data.normalize import compute_stats

    image_set, made = load_and_split(source, split)
    train = image_set.images[torch.as_tensor(made.train)]
    meanstd, minmax = compute_stats(train, "meanstd"), compute_stats(train, "minmax")
    channels = [ChannelStats(meanstd["mean"][c], meanstd["std"][c], minmax["min"][c],
                             minmax["max"][c]) for c in range(image_set.channels)]
    return TrainStats(image_set.source, len(made.train), channels)


def write_split(source: SourceRequest, split: SplitRequest, output: str | Path) -> SplitSizes:
    """The split as JSON at `output` (`imgcls train --split-file` reuses it)."""
    from imgcls.utils.files import write_json

    image_set, made = load_and_split(source, split)
    write_json(output, made.to_json(image_set))
    return SplitSizes(len(made.train), len(made.val), len(made.test))


def write_augment_preview(source: SourceRequest, preset_name: str, overrides: dict[str, Any],
                          output: str | Path, *, samples: int, variants: int,
                          seed: int) -> Path:
    """A PNG grid of `samples` images, each beside `variants` augmented versions, with the
    augmentation preset and its overridden fields as TrainConfig holds them."""
    from imgcls.data.augment import build_augment, preset
    from imgcls.data.preview import write_preview
    from imgcls.data.sources import load_source

    image_set = load_source(source.source, channels=source.channels,
                            image_size=source.image_size, data_dir=source.data_dir)
    augment = build_augment(preset(preset_name, hflip_ok=image_set.hflip_ok, **overrides),
                            image_size=image_set.image_size, channels=image_set.channels)
    return write_preview(image_set.images, augment, Path(output), samples=samples,
                         variants=variants, seed=seed)
