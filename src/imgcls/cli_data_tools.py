"""`imgcls data stats | split | preview`: argument parsing; the work is in imgcls.data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from imgcls.errors import UserError


def add_data_tools(data_verbs: argparse._SubParsersAction) -> None:
    _add_stats(data_verbs)
    _add_split(data_verbs)
    _add_preview(data_verbs)


def _source_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("source", metavar="D", help="folder, CSV or built-in name")
    command.add_argument("--data-dir", help="where built-in data sets' files are")
    command.add_argument("--channels", type=int, choices=(1, 3))
    command.add_argument("--image-size", type=int)


def _split_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--val", type=float, default=0.1, help="validation fraction")
    command.add_argument("--test", type=float, default=0.1, help="test fraction")
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--group-by", metavar="REGEX",
                         help="file names sharing the regex's first group stay together")


def _load_and_split(args: argparse.Namespace):
    from imgcls.data.sources import load_source
    from imgcls.data.split import split_image_set

    image_set = load_source(args.source, channels=args.channels, image_size=args.image_size,
                            data_dir=args.data_dir)
    split = split_image_set(image_set, val=args.val, test=args.test, seed=args.seed,
                            group_by=args.group_by)
    return image_set, split


def _add_stats(data_verbs: argparse._SubParsersAction) -> None:
    command = data_verbs.add_parser(
        "stats", help="normalization statistics (mean/std and min/max) of the train split")
    command.set_defaults(handler=_stats)
    _source_arguments(command)
    _split_arguments(command)


def _stats(args: argparse.Namespace) -> int:
    import torch

    from imgcls.data.normalize import compute_stats

    image_set, split = _load_and_split(args)
    train = image_set.images[torch.as_tensor(split.train)]
    meanstd, minmax = compute_stats(train, "meanstd"), compute_stats(train, "minmax")
    table = Table("channel", "mean", "std", "min", "max",
                  title=f"{image_set.source}: train split, {len(split.train)} images, "
                        "pixels scaled to 0..1")
    for channel in range(image_set.channels):
        table.add_row(str(channel), *(f"{stats[key][channel]:.4f}" for stats, key in (
            (meanstd, "mean"), (meanstd, "std"), (minmax, "min"), (minmax, "max"))))
    Console().print(table)
    return 0


def _add_split(data_verbs: argparse._SubParsersAction) -> None:
    command = data_verbs.add_parser(
        "split", help="write a stratified train/val/test split that `train --split-file` reuses")
    command.set_defaults(handler=_split)
    _source_arguments(command)
    _split_arguments(command)
    command.add_argument("--output", "-o", default="split.json")


def _split(args: argparse.Namespace) -> int:
    from imgcls.io import write_json

    image_set, split = _load_and_split(args)
    write_json(args.output, split.to_json(image_set))
    print(f"{len(split.train)} train / {len(split.val)} val / {len(split.test)} test -> "
          f"{args.output}")
    return 0


def _add_preview(data_verbs: argparse._SubParsersAction) -> None:
    from imgcls.cli import _config_option, add_augment_flags

    command = data_verbs.add_parser(
        "preview", help="a PNG grid of original and augmented samples")
    command.set_defaults(handler=_preview)
    _source_arguments(command)
    command.add_argument("--output", "-o", default="preview.png")
    command.add_argument("--samples", type=int, default=8)
    command.add_argument("--variants", type=int, default=4)
    command.add_argument("--seed", type=int, default=0)
    group = command.add_argument_group("augmentation")
    _config_option(group, "--augment", dest="augment",
                   help="preset: none, light, default, strong")
    add_augment_flags(group)


def _preview(args: argparse.Namespace) -> int:
    from imgcls.config import AUGMENT_FLAGS, TrainConfig
    from imgcls.data.augment import build_augment, preset
    from imgcls.data.preview import write_preview
    from imgcls.data.sources import load_source

    if args.samples < 1 or args.variants < 1:
        raise UserError("--samples and --variants must be at least 1")
    settings = {name: getattr(args, name) for name in ("augment", *AUGMENT_FLAGS)
                if hasattr(args, name)}
    config = TrainConfig(**settings)
    image_set = load_source(args.source, channels=args.channels, image_size=args.image_size,
                            data_dir=args.data_dir)
    augment = build_augment(
        preset(config.augment, hflip_ok=image_set.hflip_ok, **config.augment_overrides()),
        image_size=image_set.image_size, channels=image_set.channels)
    path = write_preview(image_set.images, augment, Path(args.output), samples=args.samples,
                         variants=args.variants, seed=args.seed)
    print(f"preview ({args.samples} samples x {args.variants} augmented versions) -> {path}")
    print(json.dumps({"augment": config.augment, **config.augment_overrides()}))
    return 0
