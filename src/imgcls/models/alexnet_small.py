"""alexnet_small: AlexNet (Krizhevsky et al. 2012) sized for 28-32 px images.

AlexNet's pattern, layer for layer: conv-ReLU-pool, conv-ReLU-pool, three convs, pool, then two
hidden fully connected layers with dropout and the classifier; its overlapping 3x3 stride-2
max pools. Sized for small images: a 5x5 stride-1 first conv (AlexNet's 11x11 stride 4 would
leave a 28 px image 6 px wide), and fewer channels and hidden units. BatchNorm after each
conv stands in for AlexNet's local response normalization (after conv1 and conv2), as in the
other BatchNorm variants here (LeNet-5, vgg*_bn); it costs 9% of the step (below). A 28 px
image leaves a 2x2 map for the classifier; other sizes are pooled to 2x2.

Width and depth from a measured trade-off (training step, batch 128, 1x28x28, on one core of a
2-core AVX512-BF16 EPYC whose other core was busy; bf16 autocast + channels_last, fp32
contiguous in brackets):

    conv channels          hidden   parameters   MFLOPs/image   training images/s
    24, 64, 96, 96, 64        256      0.37M          28.1        1,620   (767)
    32, 96, 128, 128, 96      512      0.91M          54.7        1,098   (498)   <- chosen
    48, 128, 192, 192, 128   1024      2.52M         112.7          596   (245)
    64, 192, 384, 256, 256   1024      4.56M         264.5          263   (127)
    64, 192, 384, 256, 256   2048      8.77M         272.9          261   (118)

The last two rows are torchvision's AlexNet channels, at 5x the cost of the chosen row. The
chosen row costs half the next one, so a Fashion-MNIST epoch takes about a minute on one core;
--width 1.5 is close to the next row. Without BatchNorm the chosen row trains at 1,190
images/s instead of 1,085 (9%).

CONV_CHANNELS/HIDDEN below are the chosen row; `--width` scales all of them.
"""

from __future__ import annotations

from torch import Tensor, nn

from imgcls.models.layers import make_activation, scaled
from imgcls.models.registry import ModelSpec, register

CONV_CHANNELS = (32, 96, 128, 128, 96)
HIDDEN = 512
# The map the classifier reads: what a 28 px image leaves after three 3x3 stride-2 pools.
CLASSIFIER_SIDE = 2


class AlexNetSmall(nn.Module):
    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        channels: tuple[int, ...],
        hidden: int,
        activation: str,
        dropout: float,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        self.features = nn.Sequential(
            *_conv(in_channels, c1, 5, activation),
            nn.MaxPool2d(kernel_size=3, stride=2),
            *_conv(c1, c2, 5, activation),
            nn.MaxPool2d(kernel_size=3, stride=2),
            *_conv(c2, c3, 3, activation),
            *_conv(c3, c4, 3, activation),
            *_conv(c4, c5, 3, activation),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(CLASSIFIER_SIDE)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c5 * CLASSIFIER_SIDE**2, hidden),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            make_activation(activation),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def _conv(in_channels: int, out_channels: int, kernel: int, activation: str) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        make_activation(activation),
    ]


def build_alexnet_small(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    activation: str = "relu",
    dropout: float = 0.5,
    width: float = 1.0,
) -> AlexNetSmall:
    del image_size  # pooled to 2x2 whatever is left
    return AlexNetSmall(
        num_classes=num_classes,
        in_channels=in_channels,
        channels=tuple(scaled(c, width) for c in CONV_CHANNELS),
        hidden=scaled(HIDDEN, width),
        activation=activation,
        dropout=dropout,
    )


# channels_last and bf16 autocast measured faster (same machine and step as the table above),
# images/s: bf16 channels_last 1,075, bf16 contiguous 790, fp32 channels_last 625, fp32
# contiguous 505.
register(
    ModelSpec(
        "alexnet_small", "alexnet", build_alexnet_small, head="classifier.6",
        cam_layer="features", torchvision_name=None, min_size=16, channels_last=True,
        cpu_bf16=True, compact=True,
    )
)
