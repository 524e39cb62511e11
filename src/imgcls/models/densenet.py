"""DenseNet-121 (torchvision's, ImageNet weights load) and a compact CIFAR-style DenseNet-BC.

densenet_bc is DenseNet-BC-100 with growth 12 (Huang et al. 2017, table 2): three blocks of 16
bottleneck layers, compression 0.5, 24 stem channels; about 0.77M parameters, small enough
to train on a CPU. Both use torchvision's DenseNet class (it accepts three blocks as well as four).

Small images (<= 64 px) get a 3x3 stride-1 conv0 and no pool0, where the ImageNet stem would
shrink 32 px to 8 before the first block. width scales the growth rate and the stem channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models

from imgcls.models.layers import is_small_input, replace_activations, scaled
from imgcls.models.registry import ModelSpec, register


class DenseNet(models.DenseNet):
    """torchvision's DenseNet with its final ReLU as a module, so replace_activations reaches
    it, and an optional dropout before the classifier. Neither has weights: keys are unchanged."""

    def __init__(self, *, dropout: float, **config: object) -> None:
        super().__init__(**config)
        self.final_activation: nn.Module = nn.ReLU(inplace=True)
        self.head_dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.final_activation(self.features(x))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.classifier(self.head_dropout(out))


@dataclass(frozen=True)
class _Config:
    growth_rate: int
    block_config: tuple[int, ...]
    num_init_features: int


_CONFIGS = {
    "densenet121": _Config(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64),
    "densenet_bc": _Config(growth_rate=12, block_config=(16, 16, 16), num_init_features=24),
}


def build_densenet(
    config: _Config,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    activation: str = "relu",
    dropout: float = 0.0,
    width: float = 1.0,
) -> DenseNet:
    stem_channels = scaled(config.num_init_features, width)
    model = DenseNet(
        growth_rate=scaled(config.growth_rate, width),
        block_config=config.block_config,
        num_init_features=stem_channels,
        num_classes=num_classes,
        dropout=dropout,
    )
    features = model.features
    if is_small_input(image_size):
        features.conv0 = nn.Conv2d(in_channels, stem_channels, 3, stride=1, padding=1, bias=False)
        features.pool0 = nn.Identity()
    else:
        features.conv0 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(features.conv0.weight)  # torchvision's init for every conv
    replace_activations(model, activation)
    return model


register(
    ModelSpec(
        "densenet121",
        "densenet",
        partial(build_densenet, _CONFIGS["densenet121"]),
        head="classifier",
        torchvision_name="densenet121",
    )
)
register(
    ModelSpec(
        "densenet_bc",
        "densenet",
        partial(build_densenet, _CONFIGS["densenet_bc"]),
        head="classifier",
        torchvision_name=None,
    )
)
