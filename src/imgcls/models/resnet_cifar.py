"""ResNet-20/32/56 for small images: He et al. 2016, section 4.2 (the CIFAR-10 networks).

A 3x3 conv of 16 channels, then three stages of n BasicBlocks (two 3x3 convs each) on maps of
16, 32 and 64 channels, each later stage halving the map with a stride-2 first conv; global
average pooling and the classifier: 6n + 2 weighted layers (n = 3, 5, 9). Shortcuts are the
paper's option A, as in its CIFAR experiments: identity, and where a stage halves the map and
doubles the channels, the identity of every other pixel padded with zero channels (no
parameters). That gives the paper's 0.27M, 0.46M and 0.85M parameters.

The blocks are torchvision's BasicBlock with the option-A shortcut as its `downsample`. He
initialization (Kaiming normal, fan out) for convs, BatchNorm at 1 and 0. Any image of at
least 8 px works: global pooling takes whatever map is left after two halvings. width scales
the 16/32/64 channels; dropout, when asked for, sits before the classifier.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgcls.models.layers import replace_activations, scaled
from imgcls.models.registry import ModelSpec, register

_STAGE_CHANNELS = (16, 32, 64)


class ZeroPadShortcut(nn.Module):
    """Option A: the input subsampled by `stride`, with zero channels appended up to `channels`."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class CifarResNet(nn.Module):
    def __init__(
        self, *, blocks_per_stage: int, num_classes: int, in_channels: int, dropout: float,
        width: float,
    ) -> None:
        super().__init__()
        channels = [scaled(c, width) for c in _STAGE_CHANNELS]
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        stages = []
        for stage, stage_channels in enumerate(channels):
            previous = channels[max(0, stage - 1)]
            stride = 1 if stage == 0 else 2
            stages.append(_stage(previous, stage_channels, blocks_per_stage, stride))
        self.layer1, self.layer2, self.layer3 = stages
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(self.dropout(x))


def _stage(in_channels: int, channels: int, blocks: int, stride: int) -> nn.Sequential:
    # Imported when a network is built: torchvision takes ~2 s to import, which loading
    # a model of a family without it (lenet5, say) should not pay.
    from torchvision.models.resnet import BasicBlock

    shortcut = None
    if stride != 1 or in_channels != channels:
        shortcut = ZeroPadShortcut(stride, channels - in_channels)
    layers = [BasicBlock(in_channels, channels, stride=stride, downsample=shortcut)]
    layers += [BasicBlock(channels, channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _init_he(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def build_cifar_resnet(
    depth: int,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    activation: str = "relu",
    dropout: float = 0.0,
    width: float = 1.0,
) -> CifarResNet:
    del image_size  # global pooling takes any map; the stem is the same at every size
    model = CifarResNet(
        blocks_per_stage=(depth - 2) // 6, num_classes=num_classes, in_channels=in_channels,
        dropout=dropout, width=width,
    )
    _init_he(model)
    replace_activations(model, activation)
    return model


# channels_last and bf16 autocast measured faster: resnet20's training step, batch 128, 1x28x28,
# on one core of a 2-core AVX512-BF16 EPYC, images/s: bf16 channels_last 685, bf16 contiguous
# 645, fp32 channels_last 425, fp32 contiguous 330. ResNet-32/56 repeat the same layers.
for _depth in (20, 32, 56):
    register(
        ModelSpec(
            f"resnet{_depth}",
            "resnet",
            partial(build_cifar_resnet, _depth),
            head="fc",
            cam_layer="layer3",
            torchvision_name=None,
            min_size=8,
            channels_last=True,
            cpu_bf16=True,
            compact=True,
        )
    )
