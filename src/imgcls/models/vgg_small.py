"""vgg_small: a VGG sized for 28-32 px images, the network `--model auto` trains on a budget.

VGG's recipe (Simonyan & Zisserman 2015): stacks of 3x3 convolutions, each followed by
BatchNorm (as vgg*_bn) and ReLU, with 2x2 max pools between stages, then a classifier. Sized for
small images the way airbench (Keller Jordan's CIFAR-10 speedruns) sizes its VGG-like net: a
stem conv, then three stages of two convs each, the pool right after a stage's first conv (so
the second conv already runs at the lower resolution), a global max pool and one Linear.

Width and depth from a measured trade-off on a 2-core AVX512-BF16 EPYC, 1x28x28, batch 128,
training step with bf16 autocast and channels_last (fp32 contiguous in brackets):

    stage widths     MFLOPs/image   training images/s
    32, 64, 128          31.8          2,600   (939)
    48, 96, 192          71.3          1,280   (486)
    64, 128, 256        126.7            630   (357)
    64, 256, 256        227.8            454   (245)

Width 1 (32/64/128) is the default: about 4 Fashion-MNIST epochs fit in two minutes there.
`--width` scales every stage, so `--width 2` is the 64/128/256 row.
"""

from __future__ import annotations

from torch import Tensor, nn

from imgcls.models.layers import make_activation, scaled
from imgcls.models.registry import ModelSpec, register

STAGE_WIDTHS = (32, 64, 128)


def _conv_bn(in_channels: int, out_channels: int, activation: str, pool: bool) -> list[nn.Module]:
    # No conv bias: the BatchNorm right after it has one.
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return [*layers, nn.BatchNorm2d(out_channels), make_activation(activation)]


class VGGSmall(nn.Module):
    def __init__(
        self, *, num_classes: int, in_channels: int, widths: tuple[int, ...], activation: str,
        dropout: float,
    ) -> None:
        super().__init__()
        stem = widths[0] // 2
        layers = _conv_bn(in_channels, stem, activation, pool=False)
        channels = stem
        for width in widths:
            layers += _conv_bn(channels, width, activation, pool=True)
            layers += _conv_bn(width, width, activation, pool=False)
            channels = width
        self.features = nn.Sequential(*layers)
        # Max, not average: the strongest response anywhere, as airbench found better.
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.pool(self.features(x)).flatten(1)))


def build_vgg_small(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    activation: str = "relu",
    dropout: float = 0.0,
    width: float = 1.0,
) -> VGGSmall:
    del image_size  # the global pool takes any size from 8 px up
    return VGGSmall(
        num_classes=num_classes,
        in_channels=in_channels,
        widths=tuple(scaled(w, width) for w in STAGE_WIDTHS),
        activation=activation,
        dropout=dropout,
    )


register(ModelSpec("vgg_small", "vgg", build_vgg_small, head="fc", cam_layer="features",
                   torchvision_name=None, min_size=8))
