"""VGG 11/13/16/19, with and without BatchNorm, as torchvision's VGG class.

The features are built here, layer for layer as torchvision's make_layers does (so keys
match), but for any in_channels and width, and with an Identity in place of each max pool
that would shrink a map below 1 px (28 px: 28-14-7-3-1, the fifth pool is skipped).
Small images (<= 64 px) pool the final map to 1x1 instead of 7x7: at that size a 7x7 map would
be one pixel copied 49 times, and the first classifier layer 49 times larger for nothing.
width scales the conv channels and the classifier's hidden units.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import nn

from imgcls.models.layers import is_small_input, replace_activations, resize_linears, scaled
from imgcls.models.registry import ModelSpec, register

if TYPE_CHECKING:
    from torchvision.models import VGG

# torchvision's cfgs "A", "B", "D", "E": conv output channels, "M" a 2x2 max pool.
_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [
        64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
    ],
    "vgg19": [
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ],
}  # fmt: skip


def _features(
    config: list[int | str], *, batch_norm: bool, in_channels: int, image_size: int, width: float
) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    channels, side = in_channels, image_size
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2) if side >= 2 else nn.Identity())
            side = max(1, side // 2)
            continue
        out_channels = scaled(int(item), width)
        layers.append(nn.Conv2d(channels, out_channels, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        channels = out_channels
    return nn.Sequential(*layers), channels


def build_vgg(
    config_name: str,
    batch_norm: bool,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    activation: str = "relu",
    dropout: float = 0.5,
    width: float = 1.0,
) -> VGG:
    # Imported here, not at the top: torchvision takes ~2 s to import, which loading a
    # model of another family (lenet5, say) should not pay; the registry imports every family.
    from torchvision.models import VGG

    features, channels = _features(
        _CONFIGS[config_name],
        batch_norm=batch_norm,
        in_channels=in_channels,
        image_size=image_size,
        width=width,
    )
    # torchvision's VGG allocates and initializes a 25088x4096 first classifier layer, only for
    # resize_linears to replace it below: on the meta device that costs nothing. The features,
    # built outside, still get torchvision's initialization.
    with torch.device("meta"):
        model = VGG(features, num_classes=num_classes, dropout=dropout)
    side = 1 if is_small_input(image_size) else 7
    model.avgpool = nn.AdaptiveAvgPool2d(side)
    resize_linears(model.classifier, channels * side * side, hidden=scaled(4096, width))
    _init_linears_like_torchvision(model.classifier)
    replace_activations(model, activation)
    return model


def _init_linears_like_torchvision(classifier: nn.Sequential) -> None:
    for module in classifier:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


for _name in _CONFIGS:
    for _bn in (False, True):
        _full_name = f"{_name}_bn" if _bn else _name
        register(
            ModelSpec(
                _full_name,
                "vgg",
                partial(build_vgg, _name, _bn),
                head="classifier.6",
                cam_layer="features",
                torchvision_name=_full_name,
            )
        )
