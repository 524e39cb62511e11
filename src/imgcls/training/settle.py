"""Settling a run's TrainConfig: every setting the user left open is decided here, once,
before the network is built; training then only reads the settled (frozen) config.

In order, each step a new TrainConfig (dataclasses.replace):
1. --init-from: the model file's network, channels and image size where left open (and, for
   the same network, its width, activation, dropout and test-time augmentation);
2. --model auto: the network, its width, its pretrained weights, and whether only its head
   trains, from the data and what is left of a --time-budget;
3. the default recipe (config.recipe records it: "none" if none): fine-tuning pretrained
   weights, the measured fine-tuning recipe; else, on small images, the network's own;
4. --tta hflip, off where a mirror image can be another class;
5. fine-tuning with an optimizer of the user's and no --lr: a share of its from-scratch rate.

Settling a settled config changes nothing, so the config.yaml written from it repeats the run
(`imgcls train -c`) and a resumed run settles to the same config. What varies while training
(a --time-budget's plan of steps) is the Run's (Run.budget), not the config's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console

from imgcls.config import TrainConfig
from imgcls.errors import UserError
from imgcls.modelfile.artifact import read_card
from imgcls.models.layers import is_small_input
from imgcls.recipes import FINE_TUNE_RECIPE, default_recipe, load_recipe
from imgcls.training.auto_model import AUTO, resolve_auto_model
from imgcls.training.head_first import FINE_TUNE_LR_SHARE, fine_tunes_pretrained

if TYPE_CHECKING:
    from imgcls.data.sources import ImageSet
    from imgcls.data.stream import StreamingImageSet
    from imgcls.training.prepared_data import PreparedData

# --model values that leave the choice open: with --init-from, the file's network is taken.
OPEN_MODEL_CHOICES = ("auto", None)


def settle(
    config: TrainConfig, data: PreparedData, *, device: torch.device, console: Console,
    started: float | None = None,
) -> TrainConfig:
    """`config` with every open decision made, for `data` (prepared from
    resolve_init_from(config): the file may decide the images' channels and size) on
    `device`. `started` (time.time()): when a --time-budget began; --model auto spends what
    is left of it."""
    # Again here (the caller applied it before loading the data): a no-op then, and settle
    # alone covers every decision.
    config = resolve_init_from(config)
    if config.model == AUTO:
        config = resolve_auto_model(config, data, device, console, started)
    if config.recipe is None:
        config = apply_default_recipe(config, data.image_set.image_size, console)
    config = resolve_tta(config, data.image_set, console)
    return resolve_fine_tune_lr(config)


def resolve_init_from(config: TrainConfig) -> TrainConfig:
    """With --init-from FILE, settings the user left open come from the file's architecture:
    the model (when --model is auto or not given), channels and image size, and, for the same
    model, width, activation, dropout and test-time augmentation; so the file's weights fit.
    Needed before the data is loaded (channels, size) and the run directory is named (model)."""
    if not config.init_from:
        return config
    try:
        architecture = read_card(config.init_from).architecture
    except UserError as error:
        raise UserError(f"--init-from: {error}") from None
    kwargs = architecture.kwargs
    model = architecture.name if config.model in OPEN_MODEL_CHOICES else config.model
    taken = {"model": architecture.name, "channels": kwargs.get("in_channels"),
             "image_size": kwargs.get("image_size")}
    changes: dict[str, Any] = {"model": model}
    if model == architecture.name:  # another network keeps its own of these
        taken.update({name: kwargs.get(name) for name in ("width", "activation", "dropout")})
        if "tta" not in config.given:  # test-time augmentation is the file's too
            changes["tta"] = kwargs.get("tta", "none")
    changes.update({name: value for name, value in taken.items()
                    if name != "model" and getattr(config, name) is None})
    # What the file decided counts as given: a model's default recipe must not override it.
    given = config.given | set(taken) | set(changes) & {"tta"}
    return replace(config, **changes, given=given)


def apply_default_recipe(config: TrainConfig, image_size: int, console: Console) -> TrainConfig:
    """The measured recipe for what the run does supplies the settings left open: fine-tuning
    pretrained weights, FINE_TUNE_RECIPE (a small-image recipe is a from-scratch one); else,
    on small images, the model's own."""
    if fine_tunes_pretrained(config):
        name: str | None = FINE_TUNE_RECIPE
    else:
        name = default_recipe(config.model) if is_small_input(image_size) else None
    # config.yaml records it; a repeat applies nothing new.
    config = replace(config, recipe=name or "none")
    if name is None:
        return config
    config, taken = config.with_recipe(load_recipe(name))
    if taken:
        console.print(f"recipe {name}: {', '.join(f'{k}={getattr(config, k)}' for k in taken)}")
    return config


def resolve_tta(
    config: TrainConfig, image_set: ImageSet | StreamingImageSet, console: Console
) -> TrainConfig:
    """--tta hflip only where a mirror image is the same class (config.yaml then records
    what the run did)."""
    if config.tta == "hflip" and not image_set.hflip_ok:
        console.print(f"tta: hflip off — a mirror image of {config.data} can be another class")
        return replace(config, tta="none")
    return config


def resolve_fine_tune_lr(config: TrainConfig) -> TrainConfig:
    """Fine-tuning pretrained weights with no rate settled (an optimizer other than the
    fine-tuning recipe's was given, whose rate that recipe does not set): FINE_TUNE_LR_SHARE
    of the optimizer's from-scratch rate (config.yaml records the rate used)."""
    if fine_tunes_pretrained(config) and config.lr is None:
        return replace(config, lr=config.resolved_lr * FINE_TUNE_LR_SHARE)
    return config
