"""The flags several verbs share, and the one way flags become a TrainConfig.

`imgcls train`, `lr-find`, `compare` and `tune` take the TrainConfig flags
(`add_train_options`, each tool leaving out some); `data preview` takes the augmentation
ones. A TrainConfig flag overrides the config only when given, so `-c config.yaml` stands
where no flag says otherwise.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from imgcls.config import (
    AUGMENTS,
    BALANCES,
    METRICS,
    NO_PRETRAINED,
    NORMALIZATIONS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    TTA_CHOICES,
    TrainConfig,
)

_DEFAULTS = TrainConfig()


def config_option(
    group: argparse._ArgumentGroup, *flags: str, dest: str, **kwargs: Any
) -> None:
    """A flag that overrides TrainConfig.<dest> only when given (so -c config.yaml stands)."""
    default = getattr(_DEFAULTS, dest)
    help_text = kwargs.pop("help", "")
    group.add_argument(*flags, dest=dest, default=argparse.SUPPRESS,
                       help=f"{help_text} (default: {default})".strip(), **kwargs)


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig settings given as flags (a flag not given is absent from `args`)."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """-c's settings (if any), then the flags given on the command line over them.

    The run directory comes from --output only: a run's config.yaml names that run's
    directory, and repeating the run writes a new one (the tools name their runs themselves).
    """
    base = TrainConfig.from_yaml(args.config).to_dict() if args.config else {}
    settings = {**base, "output": None, **given_settings(args)}
    if settings.get("init_from") and "model" not in settings:
        settings["model"] = "auto"  # the model file's own network (training.components)
    return TrainConfig.from_dict(settings)


def comma_list(text: str) -> list[str]:
    """`a, b,,c` -> ["a", "b", "c"]: the names of a comma-separated flag."""
    return [name.strip() for name in text.split(",") if name.strip()]


def add_train_options(
    command: argparse.ArgumentParser, *, exclude: frozenset[str] = frozenset()
) -> None:
    """Every TrainConfig flag of `imgcls train` (but those whose setting is in `exclude`),
    each overriding the config only when given; `lr-find`, `compare` and `tune` share them."""

    def _option(group: argparse._ArgumentGroup, *flags: str, dest: str, **kwargs: Any) -> None:
        if dest not in exclude:
            config_option(group, *flags, dest=dest, **kwargs)

    data = command.add_argument_group("data")
    _option(data, "--data", dest="data", help="folder, CSV, digits, fashion-mnist, mnist, cifar10")
    _option(data, "--data-dir", dest="data_dir", help="where built-in data sets' files are")
    _option(data, "--image-size", dest="image_size", type=int, help="side in pixels")
    _option(data, "--channels", dest="channels", type=int, choices=(1, 3))
    _option(data, "--val", dest="val_fraction", type=float, help="validation fraction")
    _option(data, "--test", dest="test_fraction", type=float, help="test fraction")
    _option(data, "--split-seed", dest="split_seed", type=int, help="seed of the split")
    _option(data, "--split-file", dest="split_file", metavar="SPLIT_JSON",
            help="reuse a split (from `imgcls data split` or a run's split.json)")
    _option(data, "--group-by", dest="group_by", metavar="REGEX",
            help="file names sharing the regex's first group stay in one split")
    _option(data, "--relabel", dest="relabel", metavar="CSV",
            help="new labels (path,label) applied in memory, files untouched "
                 "(`imgcls data labels` writes relabel.csv)")
    _option(data, "--exclude", dest="exclude", metavar="FILE",
            help="items left out: a CSV with a path or item column (label_issues.csv: its "
                 "is_issue rows) or one item a line")
    _option(data, "--cache-limit", dest="cache_limit", type=float, metavar="GIB",
            help="folders decoding to more stream from disk (default: a quarter of RAM)")
    _option(data, "--workers", dest="workers", type=int,
            help="decoding processes when streaming (default: one per core)")
    _option(data, "--balance", dest="balance", choices=BALANCES,
            help="imbalanced classes: class-weighted loss or a weighted sampler")
    _option(data, "--normalize", dest="normalize", choices=NORMALIZATIONS)
    _option(data, "--augment", dest="augment", choices=AUGMENTS, help="augmentation preset")
    if "augment" not in exclude:
        add_augment_flags(data)
    model = command.add_argument_group("model")
    _option(model, "--model", "-m", dest="model",
            help="a name from `imgcls models`, or auto: the network the data and the "
                 "--time-budget allow")
    _option(model, "--recipe", dest="recipe", metavar="NAME",
            help="a measured configuration from imgcls/recipes (flags override it; default: "
                 "the model's own recipe on small images; none: no recipe)")
    _option(model, "--activation", dest="activation",
            help="relu, gelu, silu, tanh, sigmoid, leaky_relu")
    _option(model, "--dropout", "--drop", dest="dropout", type=float)
    _option(model, "--width", dest="width", type=float, help="channel width multiplier")
    _option(model, "--pretrained", dest="pretrained", nargs="?", const="imagenet",
            metavar="PATH", help="torchvision ImageNet weights, or a local state-dict file "
                                 "(default for --model auto on photos: when a file is at hand)")
    _option(model, "--no-pretrained", dest="pretrained", action="store_const",
            const=NO_PRETRAINED, help="train from scratch, even where --model auto would "
                                      "start from ImageNet weights")
    _option(model, "--init-from", dest="init_from", metavar="MODEL",
            help="start from an imgcls model file; its architecture, channels and image size "
                 "unless given")
    _option(model, "--freeze-backbone", dest="freeze_backbone", action="store_true",
            help="train the classifier head only")
    _option(model, "--tta", dest="tta", choices=TTA_CHOICES,
            help="hflip: the saved model averages each image's logits with its mirror's "
                 "(twice the inference cost; off for data a mirror changes, like digits)")
    _option(model, "--no-calibrate", dest="calibrate", action="store_false",
            help="skip fitting the temperature and the `unknown` threshold on the validation "
                 "split after training")
    _option(model, "--ood-keep", dest="ood_keep", type=float, metavar="SHARE",
            help="the share of validation images the `unknown` threshold keeps (default 0.95)")
    optimization = command.add_argument_group("optimization")
    _option(optimization, "--epochs", dest="epochs", type=_epochs,
            help="a fraction stops the last epoch part way")
    _option(optimization, "--time-budget", dest="time_budget", metavar="DURATION",
            help="e.g. 90s, 10m, 1h: plan the epochs (and with --model auto the network) to "
                 "end within it, evaluation included")
    _option(optimization, "--batch-size", "-b", dest="batch_size", type=int)
    _option(optimization, "--optimizer", "--opt", dest="optimizer", choices=OPTIMIZERS)
    _option(optimization, "--lr", dest="lr", type=float,
            help="learning rate; default per optimizer")
    _option(optimization, "--momentum", dest="momentum", type=float)
    _option(optimization, "--weight-decay", "--wd", dest="weight_decay", type=float)
    _option(optimization, "--lr-mult", dest="lr_mult", type=float, metavar="RATIO",
            help="fine-tuning pretrained weights: the backbone's first layers learn at "
                 "lr/RATIO, its last at lr/sqrt(RATIO), the head at lr (default: 10, the "
                 "pretrained-finetune recipe's; 100 under --recipe none)")
    _option(optimization, "--sched", dest="sched", choices=SCHEDULES)
    _option(optimization, "--warmup-epochs", dest="warmup_epochs", type=float)
    _option(optimization, "--decay-epochs", dest="decay_epochs", type=float,
            help="--sched step: decay every this many epochs")
    _option(optimization, "--decay-milestones", dest="decay_milestones", type=int, nargs="+",
            metavar="EPOCH", help="--sched multistep: decay at these epochs")
    _option(optimization, "--decay-rate", dest="decay_rate", type=float,
            help="lr factor at each decay (step, multistep, plateau)")
    _option(optimization, "--plateau-patience", dest="plateau_patience", type=int)
    _option(optimization, "--label-smoothing", "--smoothing", dest="label_smoothing",
            type=float)
    _option(optimization, "--ema", dest="ema", action="store_true",
            help="evaluate and save an exponential moving average of the weights")
    _option(optimization, "--ema-decay", dest="ema_decay", type=float)
    _option(optimization, "--clip-grad", dest="clip_grad", type=float, help="max gradient norm")
    _option(optimization, "--metric", dest="metric", choices=METRICS,
            help="validation metric that picks the best model")
    _option(optimization, "--patience", dest="patience", type=int,
            help="stop after this many epochs without a better --metric")
    speed = command.add_argument_group("speed and reproducibility")
    _option(speed, "--precision", dest="precision", choices=PRECISIONS)
    _option(speed, "--no-channels-last", dest="channels_last", action="store_false")
    _option(speed, "--threads", dest="threads", type=int)
    _option(speed, "--device", dest="device", help="cpu, cuda, cuda:1 ...")
    _option(speed, "--seed", dest="seed", type=int)
    _option(speed, "--deterministic", dest="deterministic", action="store_true",
            help="deterministic kernels: the same seed gives identical weights")
    _option(speed, "--compile", dest="compile", action="store_true", help="torch.compile")
    _option(speed, "--sync-bn", dest="sync_bn", action="store_true",
            help="under torchrun: BatchNorm statistics over all ranks (CUDA only)")
    output = command.add_argument_group("output")
    _option(output, "--output", "-o", dest="output", help="run directory")
    _option(output, "--save-every-steps", dest="save_every_steps", type=int,
            help="also write the resume state every N steps")
    _option(output, "--tensorboard", dest="tensorboard", action="store_true",
            help="write TensorBoard event files to RUN/tensorboard")


def _epochs(text: str) -> int | float:
    """--epochs 5 stays an integer in config.yaml; --epochs 2.5 is allowed."""
    value = float(text)
    return int(value) if value.is_integer() else value


def add_augment_flags(group: argparse._ArgumentGroup) -> None:
    """Per-flag overrides of the --augment preset (names follow timm where it has one)."""
    _option = config_option
    _option(group, "--resized-crop", dest="resized_crop", type=float, metavar="MIN_SCALE")
    _option(group, "--shift", dest="shift", type=float, metavar="FRACTION",
            help="random crop with padding: max shift as a fraction of the side")
    _option(group, "--rotate", dest="rotate", type=float, metavar="DEGREES")
    _option(group, "--hflip", dest="hflip", type=float, metavar="P")
    _option(group, "--vflip", dest="vflip", type=float, metavar="P")
    for name in ("brightness", "contrast", "saturation", "hue"):
        _option(group, f"--{name}", dest=name, type=float)
    _option(group, "--noise", dest="noise", type=float, metavar="STD")
    _option(group, "--erase", "--reprob", dest="erase", type=float, metavar="P",
            help="random erasing probability")
    _option(group, "--auto-augment", "--aa", dest="auto_augment",
            choices=("none", "randaugment", "trivialaugment"))
    _option(group, "--mixup", dest="mixup", type=float, metavar="ALPHA")
    _option(group, "--cutmix", dest="cutmix", type=float, metavar="ALPHA")
