"""AlexNet, as torchvision's AlexNet class, so its ImageNet weights load.

Small images (<= 64 px) get a 5x5 stride-1 first conv and lose the last max pool: a 28 px
image then reaches the 6x6 map the classifier expects instead of vanishing after two pools.
width scales the conv channels and the classifier's hidden units.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from imgcls.models.layers import is_small_input, replace_activations, resize_linears, scaled
from imgcls.models.registry import ModelSpec, register

if TYPE_CHECKING:
    from torchvision.models import AlexNet


def _features(in_channels: int, small: bool, width: float) -> tuple[nn.Sequential, int]:
    """torchvision's AlexNet features, module for module (so keys match), for any input."""
    c1, c2, c3, c4, c5 = (scaled(n, width) for n in (64, 192, 384, 256, 256))
    if small:
        first = nn.Conv2d(in_channels, c1, kernel_size=5, stride=1, padding=2)
    else:
        first = nn.Conv2d(in_channels, c1, kernel_size=11, stride=4, padding=2)
    features = nn.Sequential(
        first,
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(c1, c2, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(c2, c3, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c3, c4, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c4, c5, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Identity() if small else nn.MaxPool2d(kernel_size=3, stride=2),
    )
    return features, c5


def build_alexnet(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    activation: str = "relu",
    dropout: float = 0.5,
    width: float = 1.0,
) -> AlexNet:
    from torchvision.models import AlexNet  # here, not at the top: see build_vgg

    model = AlexNet(num_classes=num_classes, dropout=dropout)
    model.features, channels = _features(in_channels, is_small_input(image_size), width)
    if width != 1.0:
        resize_linears(model.classifier, in_features=channels * 6 * 6, hidden=scaled(4096, width))
    replace_activations(model, activation)
    return model


register(
    ModelSpec("alexnet", "alexnet", build_alexnet, head="classifier.6",
              cam_layer="features", torchvision_name="alexnet")
)
