"""The model registry: one dict from name to ModelSpec, and create_model on top of it.

Like torchvision's models/_api.py, registering a name twice is a bug and raises. Like timm's
create_model, options left as None are dropped so each model's own defaults stand.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from imgcls.errors import UserError
from imgcls.models.flip_tta import check_tta, with_flip_average
from imgcls.models.layers import check_activation


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "lenet" | "alexnet" | "vgg" | "resnet" | "densenet" | "mobile"
    builder: Callable[..., nn.Module]
    head: str  # dotted path of the final classifier nn.Linear: "fc", "classifier.6", ...
    # Dotted path of the module whose output is the last spatial map [N, C, h, w] before the
    # head: "features", "layer4", ... Grad-CAM's layer (evaluation/explain.py).
    cam_layer: str
    torchvision_name: str | None  # torchvision builder whose ImageNet weights load into this model
    min_size: int = 28
    # Whether training in channels_last memory format is faster; True for the wide conv nets.
    channels_last: bool = True
    # Whether bf16 autocast trains it faster on a CPU with native bf16 (--precision auto).
    cpu_bf16: bool = True
    # A paper's configuration for small images (CIFAR's 32 px): ResNet-20, DenseNet-BC-100, ...
    compact: bool = False


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list_models(), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UserError(
        f"unknown model {name!r}; {hint}known models: {', '.join(list_models())} (--model)"
    )


def create_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 224,
    activation: str | None = None,
    dropout: float | None = None,
    width: float | None = None,
    tta: str = "none",
) -> nn.Module:
    """Build a registered model, untrained. None options keep the model's own default;
    `tta` "hflip" makes its eval-mode logits the average over a horizontal flip."""
    spec = get_spec(name)
    _check_shape_options(spec, num_classes, in_channels, image_size)
    _check_options(activation, dropout, width)
    check_tta(tta)
    options = {"activation": activation, "dropout": dropout, "width": width}
    given = {key: value for key, value in options.items() if value is not None}
    model = spec.builder(
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, **given
    )
    return with_flip_average(model, head=spec.head) if tta == "hflip" else model


def _check_shape_options(
    spec: ModelSpec, num_classes: int, in_channels: int, image_size: int
) -> None:
    if image_size < spec.min_size:
        raise UserError(
            f"model {spec.name} needs images of at least {spec.min_size} px; got {image_size}"
            f" — pass --image-size {spec.min_size} or larger"
        )
    if num_classes < 2:
        raise UserError(f"a classifier needs at least 2 classes; got {num_classes}")
    if in_channels < 1:
        raise UserError(
            f"images need at least 1 channel; got {in_channels} — pass --channels 1 or 3"
        )


def _check_options(activation: str | None, dropout: float | None, width: float | None) -> None:
    if activation is not None:
        check_activation(activation)
    if dropout is not None and not 0.0 <= dropout < 1.0:
        raise UserError(f"dropout must be in [0, 1); got {dropout} — pass e.g. --dropout 0.2")
    if width is not None and width <= 0.0:
        raise UserError(f"width must be > 0; got {width} — pass e.g. --width 0.5")
