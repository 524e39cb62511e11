"""TrainConfig: every hyperparameter of a run, with its default, in one place.

A run directory's `config.yaml` is this dataclass written out; loading it back and
training again repeats the run.

A TrainConfig is frozen: what a run leaves open (--model auto, the default recipe,
--init-from, ...) is decided once, before the first step, by training/settle.py, which makes
changed copies with dataclasses.replace; training only reads the settled config, so the
config.yaml written from it is what the run did.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from imgcls.errors import UserError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "adam", "adamw", "rmsprop")
# Learning rates that train the registry's networks well from scratch with each optimizer;
# used when --lr is not given.
DEFAULT_LR = {
    "sgd": 0.1,
    "momentum": 0.05,
    "nesterov": 0.05,
    "adagrad": 0.01,
    "adam": 1e-3,
    "adamw": 2e-3,
    "rmsprop": 5e-4,
}
NORMALIZATIONS = ("meanstd", "minmax")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUGMENTS = ("none", "light", "default", "strong")
# Per-flag overrides of the --augment preset (see imgcls.data.augment.AugmentConfig).
AUGMENT_FLAGS = ("resized_crop", "shift", "rotate", "hflip", "vflip", "brightness", "contrast",
                 "saturation", "hue", "noise", "erase", "auto_augment", "mixup", "cutmix")
SCHEDULES = ("cosine", "constant", "step", "multistep", "onecycle", "plateau")
METRICS = ("val_acc", "val_loss", "val_f1_macro")
BALANCES = ("none", "weights", "sampler")
NO_PRETRAINED = "none"  # --no-pretrained
TTA_CHOICES = ("none", "hflip")  # test-time augmentation (imgcls.models.flip_tta)
# The spellings systemd's time spans take ("90s", "5min", "1 hour", "2hrs"), plus days.
_DURATION_UNITS = {
    **dict.fromkeys(("", "s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)")
_CLOCK = re.compile(r"(?:(\d+):)?(\d+):(\d{1,2}(?:\.\d*)?)")  # 1:30:00, 90:00


@dataclass(frozen=True)
class TrainConfig:
    # data
    data: str = "digits"  # folder, CSV, or a built-in name (digits, fashion-mnist, mnist, cifar10)
    data_dir: str | None = None  # where built-in data sets' files are (or go when downloaded)
    image_size: int | None = None  # None: the source's own size (digits: 32)
    channels: int | None = None  # None: 1 for grayscale sources, else 3
    val_fraction: float = 0.1  # of what the source does not already split
    test_fraction: float = 0.1
    split_seed: int | None = None  # None: same as seed
    split_file: str | None = None  # reuse a split.json (from `imgcls data split` or a run)
    group_by: str | None = None  # regex on file names: items sharing its group split together
    # Label fixes applied in memory after the split (`imgcls data labels` writes both files):
    relabel: str | None = None  # CSV of item,label: a new label per item
    exclude: str | None = None  # items left out (label_issues.csv: its is_issue rows)
    balance: str = "none"  # imbalanced classes: "weights" (loss) or "sampler" (resampling)
    # Folders that decode to more than this many GiB stream from disk (None: 1/4 of RAM).
    cache_limit: float | None = None
    workers: int | None = None  # decoding processes when streaming (None: one per core)
    normalize: str = "meanstd"  # statistics of the train split only
    augment: str = "default"  # preset: none, light, default (shift + flip), strong
    # Overrides of the preset's strengths; None keeps the preset's value.
    resized_crop: float | None = None  # min area scale of a random resized crop
    shift: float | None = None  # max translation, fraction of the side
    rotate: float | None = None  # degrees
    hflip: float | None = None  # probability (never for data a mirror changes, like digits)
    vflip: float | None = None
    brightness: float | None = None
    contrast: float | None = None
    saturation: float | None = None
    hue: float | None = None
    noise: float | None = None  # Gaussian noise std (pixels in 0..1)
    erase: float | None = None  # random erasing probability
    auto_augment: str | None = None  # randaugment, trivialaugment
    mixup: float | None = None  # MixUp alpha
    cutmix: float | None = None  # CutMix alpha
    # model
    # A registry name, or "auto": the network that the data and the time budget allow.
    model: str = "auto"
    # A named recipe (imgcls/recipes) under the other settings; None: the model's default
    # recipe on small images; "none": no recipe.
    recipe: str | None = None
    activation: str | None = None  # None: the model's own (relu)
    dropout: float | None = None  # None: the model's own
    width: float | None = None  # channel width multiplier; None: 1.0
    # "imagenet" (torchvision's weights), a state-dict file, or "none" (--no-pretrained). None:
    # --model auto on photos starts from ImageNet weights when a file is at hand
    # (training/auto_pretrained.py); any other model trains from scratch.
    pretrained: str | None = None
    init_from: str | None = None  # an imgcls model file to start from
    freeze_backbone: bool = False  # train the classifier head only
    # Fine-tuning pretrained weights: the head is first fitted on the frozen backbone's
    # features, then the whole network trains with discriminative rates, as fastai's
    # fine_tune: the head at --lr, the backbone's later half at lr/sqrt(lr_mult), its earlier
    # half at lr/lr_mult (fastai's slice(lr/100, lr) over three groups).
    lr_mult: float = 100.0
    # Test-time augmentation, part of the saved network: "hflip" averages the logits of each
    # image and its mirror (off for data a mirror changes, like digits); "none".
    tta: str = "none"
    # After training, on the validation split: a temperature that calibrates the
    # probabilities, and the familiarity threshold under which an answer is "unknown",
    # set to keep `ood_keep` of the validation images (model_card.TrustRecord).
    calibrate: bool = True
    ood_keep: float = 0.95
    # optimization
    epochs: float = 10  # a fraction stops the last epoch part way
    # A duration ("90s", "10m", "1h"): the run plans its epochs to end within it.
    time_budget: str | None = None
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float | None = None  # None: DEFAULT_LR[optimizer]
    momentum: float = 0.9  # for momentum/nesterov/rmsprop
    weight_decay: float = 5e-4
    sched: str = "cosine"  # per-step cosine decay after a linear warmup
    warmup_epochs: float = 1.0
    decay_epochs: float = 30.0  # step: multiply the lr by decay_rate every decay_epochs
    decay_milestones: list[int] = field(default_factory=lambda: [30, 60, 90])  # multistep
    decay_rate: float = 0.1  # step, multistep, plateau
    plateau_patience: int = 2  # plateau: epochs without improvement before a decay
    label_smoothing: float = 0.0
    ema: bool = False  # evaluate and save an exponential moving average of the weights
    ema_decay: float = 0.999
    clip_grad: float | None = None  # max gradient norm
    # early stopping and the best model
    metric: str = "val_acc"  # which validation metric picks the best epoch
    patience: int | None = None  # stop after this many epochs without improvement
    # speed
    precision: str = "auto"  # auto: bf16 autocast where the CPU runs bf16 natively / on CUDA
    channels_last: bool = True
    compile: bool = False  # torch.compile the model (slow start, faster steps on big runs)
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over all ranks (CUDA)
    deterministic: bool = False  # deterministic kernels: same seed, bit-identical weights
    threads: int | None = None  # None: all cores
    device: str | None = None  # None: cuda when present, else cpu
    seed: int = 0
    # output
    output: str | None = None  # run directory; None: runs/<data>-<model>[-N]
    save_every_steps: int | None = None  # also write last.pt every N steps (mid-epoch)
    tensorboard: bool = False  # write TensorBoard event files to <run>/tensorboard
    # The settings that the user, a config file or a recipe gave (not written out): a model's
    # default recipe fills only the others.
    given: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)

    @property
    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def augment_overrides(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in AUGMENT_FLAGS}
        values["auto"] = values.pop("auto_augment")
        return {name: value for name, value in values.items() if value is not None}

    @property
    def pretrained_weights(self) -> str | None:
        """What --pretrained loads: "imagenet" or a file; None when off or left open."""
        return None if self.pretrained in (None, NO_PRETRAINED) else self.pretrained

    @property
    def resolved_split_seed(self) -> int:
        return self.split_seed if self.split_seed is not None else self.seed

    def validate(self) -> TrainConfig:
        _require(self.epochs > 0, f"--epochs must be positive; got {self.epochs}")
        if self.time_budget is not None:
            parse_duration(self.time_budget)  # raises a UserError naming the problem
        _require(self.batch_size > 0, f"--batch-size must be positive; got {self.batch_size}")
        _require(self.lr is None or self.lr > 0, f"--lr must be positive; got {self.lr}")
        _require(self.weight_decay >= 0, f"--weight-decay must be >= 0; got {self.weight_decay}")
        _require(
            self.warmup_epochs >= 0, f"--warmup-epochs must be >= 0; got {self.warmup_epochs}"
        )
        _require(
            self.dropout is None or 0 <= self.dropout < 1,
            f"--dropout must be in [0, 1); got {self.dropout}",
        )
        _require(
            self.width is None or self.width > 0, f"--width must be positive; got {self.width}"
        )
        _require(
            self.image_size is None or self.image_size > 0,
            f"--image-size must be positive; got {self.image_size}",
        )
        _require(self.channels in (None, 1, 3), f"--channels must be 1 or 3; got {self.channels}")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("normalize", self.normalize, NORMALIZATIONS)
        _choice("precision", self.precision, PRECISIONS)
        _choice("augment", self.augment, AUGMENTS)
        _choice("sched", self.sched, SCHEDULES)
        _choice("balance", self.balance, BALANCES)
        _choice("metric", self.metric, METRICS)
        _choice("tta", self.tta, TTA_CHOICES)
        _require(0 < self.ood_keep <= 1, f"--ood-keep must be in (0, 1]; got {self.ood_keep}")
        _require(0 <= self.label_smoothing < 1,
                 f"--label-smoothing must be in [0, 1); got {self.label_smoothing}")
        _require(0 < self.ema_decay < 1, f"--ema-decay must be in (0, 1); got {self.ema_decay}")
        _require(self.clip_grad is None or self.clip_grad > 0,
                 f"--clip-grad must be positive; got {self.clip_grad}")
        _require(self.patience is None or self.patience > 0,
                 f"--patience must be positive; got {self.patience}")
        _require(self.save_every_steps is None or self.save_every_steps > 0,
                 f"--save-every-steps must be positive; got {self.save_every_steps}")
        _require(self.lr_mult >= 1, f"--lr-mult must be >= 1; got {self.lr_mult}")
        _require(self.decay_epochs > 0, f"--decay-epochs must be positive; got {self.decay_epochs}")
        return self

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        del values["given"]
        return values

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, origin: str = "arguments") -> TrainConfig:
        known = {f.name for f in fields(cls)} - {"given"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(
                f"unknown setting(s) {', '.join(unknown)} in {origin}; "
                f"known settings: {', '.join(sorted(known))}"
            )
        recipe = values.get("recipe")
        if recipe is not None and str(recipe).strip().lower() != "none":
            from imgcls.recipes import load_recipe

            values = {**recipe_left_open(load_recipe(recipe), values), **values}
        return cls(**values, given=frozenset(values))

    def with_recipe(self, settings: dict[str, Any]) -> tuple[TrainConfig, list[str]]:
        """A copy that takes a recipe's settings where none was given (recipe_left_open),
        and the names taken."""
        taken = recipe_left_open(settings, {name: getattr(self, name) for name in self.given})
        return dataclasses.replace(self, **taken), list(taken)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        file = Path(path)
        if not file.is_file():
            raise UserError(f"config file {file} does not exist; pass a YAML written by a run")
        try:
            values = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as error:
            raise UserError(f"config file {file} is not valid YAML: {error}") from None
        if not isinstance(values, dict):
            raise UserError(f"config file {file} must hold a mapping of settings")
        return cls.from_dict(values, origin=str(file))


def recipe_left_open(settings: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The recipe `settings` that the `given` ones leave open. A recipe's learning rate is its
    optimizer's: with another optimizer given, the rate stays open too (that optimizer's own
    default, DEFAULT_LR)."""
    left_open = {name: value for name, value in settings.items() if name not in given}
    if "optimizer" in given and settings.get("optimizer", given["optimizer"]) != given["optimizer"]:
        left_open.pop("lr", None)
    return left_open


def parse_duration(text: str) -> float:
    """Seconds in "90s", "10m", "1h", "1h30m", "1.5h", "5 minutes", "1:30:00" (h:mm:ss),
    "90:00" (m:ss) or a bare number of seconds."""
    cleaned = text.strip().lower()
    clock = _CLOCK.fullmatch(cleaned)
    if clock:
        hours, minutes, secs = clock.groups()
        seconds = float(hours or 0) * 3600 + float(minutes) * 60 + float(secs)
    else:
        parts = _DURATION.findall(cleaned)
        known = all(unit in _DURATION_UNITS for _, unit in parts)
        if not cleaned or _DURATION.sub("", cleaned).strip() or not parts or not known:
            raise UserError(f"--time-budget {text!r} is not a duration; write e.g. 90s, 10m, "
                            "1h30m, 1.5h or 1:30:00")
        seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise UserError(f"--time-budget must be positive; got {text!r}")
    return seconds


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        flag = "--" + name.replace("_", "-")
        raise UserError(f"unknown {name} {value!r}; {flag} takes one of: {', '.join(allowed)}")
