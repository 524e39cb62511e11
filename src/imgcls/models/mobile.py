"""MobileNetV2, MobileNetV3 small and large, EfficientNet-B0: torchvision's classes, so their
ImageNet weights load.

Small images (<= 64 px) get a stride-1 first convolution, as the CIFAR versions of these
networks do: an overall stride of 16 instead of 32, so 32 px ends on a 2x2 map, not one pixel.
The kernel stays 3x3, so its ImageNet weights still load. in_channels rebuilds the same first
convolution for that many inputs. width is torchvision's width_mult (channels rounded to
multiples of 8); dropout is torchvision's own, just before the head. `activation`, when given,
replaces the network's own activations (ReLU6; ReLU and Hardswish; SiLU), not the
squeeze-excitation gates (Hardsigmoid, Sigmoid).
"""

from __future__ import annotations

from functools import partial

from torch import nn

from imgcls.models.layers import is_small_input, replace_activations
from imgcls.models.registry import ModelSpec, register

# What `activation` replaces: every activation these networks have but their gates.
_OWN_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU)
_DEFAULT_DROPOUT = 0.2  # torchvision's, for all four


def build_mobile(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    activation: str | None = None,
    dropout: float = _DEFAULT_DROPOUT,
    width: float = 1.0,
) -> nn.Module:
    """`name`: the torchvision builder, "mobilenet_v2", "mobilenet_v3_small", ..."""
    make = _efficientnet_b0 if name == "efficientnet_b0" else partial(_mobilenet, name)
    model = make(num_classes=num_classes, dropout=dropout, width=width)
    _replace_stem(model.features[0], in_channels, stride=1 if is_small_input(image_size) else 2)
    _faster_running_statistics(model)
    if activation is not None:
        replace_activations(model, activation, kinds=_OWN_ACTIVATIONS)
    return model


def _mobilenet(name: str, *, num_classes: int, dropout: float, width: float) -> nn.Module:
    # Imported here, not at the top: torchvision takes ~2 s to import (see build_vgg).
    from torchvision.models import get_model

    # The MobileNet builders pass width_mult on to their configuration (MobileNetV2 takes it
    # itself; MobileNetV3 through _mobilenet_v3_conf).
    return get_model(name, weights=None, num_classes=num_classes, dropout=dropout,
                     width_mult=width)


def _efficientnet_b0(*, num_classes: int, dropout: float, width: float) -> nn.Module:
    from torchvision.models import efficientnet

    # efficientnet_b0() fixes width_mult at 1.0 (other widths are B1-B7, deeper and for larger
    # images too); _efficientnet_conf is where torchvision scales B0's table. It is private,
    # but its signature and the B0 table are the same from torchvision 0.13 to 0.29 (compared
    # with 0.26's source).
    setting, last_channel = efficientnet._efficientnet_conf(
        "efficientnet_b0", width_mult=width, depth_mult=1.0)
    return efficientnet.EfficientNet(setting, dropout, num_classes=num_classes,
                                     last_channel=last_channel)


# torchvision's MobileNetV3 keeps BatchNorm's running statistics with momentum 0.01, made for
# ImageNet's hundreds of thousands of steps. A run of a few hundred steps leaves them near their
# start (or ImageNet's), so the network evaluates on statistics its weights no longer match:
# mobilenet_v3_small from scratch, 140 steps on 900 Fashion-MNIST images at 96 px, trained to
# 0.72 accuracy and validated at 0.10, every image one class. PyTorch's default, 0.1, as
# MobileNetV2 and EfficientNet-B0 have. Only the statistics' pace changes: weights load as they
# are.
RUNNING_STATS_MOMENTUM = 0.1


def _faster_running_statistics(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = RUNNING_STATS_MOMENTUM


def _replace_stem(stem: nn.Sequential, in_channels: int, *, stride: int) -> None:
    """The first conv of the stem (conv, norm, activation) for `in_channels` inputs and
    `stride`; torchvision's initialization for every conv of these networks."""
    old = stem[0]
    stem[0] = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, stride=stride,
                        padding=old.padding, bias=False)
    nn.init.kaiming_normal_(stem[0].weight, mode="fan_out")


# torchvision name -> the head, the final Linear of its `classifier` Sequential.
_HEADS = {
    "mobilenet_v2": "classifier.1",
    "mobilenet_v3_small": "classifier.3",
    "mobilenet_v3_large": "classifier.3",
    "efficientnet_b0": "classifier.1",
}

# min_size 1: padded convolutions and global pools run at any size. Measured: a training step
# (batch 2) and an eval forward at every side from 1 to 16 px; torchvision's meta says (1, 1).
# Below 17 px the last map is 1x1 (at 32 px it is 2x2).
# channels_last, and fp32 rather than bf16: a training step, 1 thread of a 2-core AVX512-BF16
# EPYC (the other core busy), images/s by CPU time over two rounds. At 1x28x28, batch 128:
#   mobilenet_v2        bf16 channels_last 165-170, bf16 contiguous 142-147,
#                       fp32 channels_last 242-244, fp32 contiguous 133
#   mobilenet_v3_small  305-312, 291-292, 879-901, 421
#   mobilenet_v3_large  144-148, 137-139, 332-341, 172-181
#   efficientnet_b0     75-81, 78-79, 150-176, 86-94
# At 3x224x224, batch 16-32: mobilenet_v3_small 45, 46, 82, 54; mobilenet_v3_large 20, 19,
# 29, 18; efficientnet_b0 10-11, 9-10, 9-10, 6-8; mobilenet_v2 18-22, 14-15, 13-14, 7-9: only
# there does bf16 pay (1.4-1.7x), and the flag has no image size: small images, where it
# costs 1.5x, stay fp32 (--precision bf16 asks for it at 224 px).
for _name, _head in _HEADS.items():
    register(
        ModelSpec(
            _name,
            "mobile",
            partial(build_mobile, _name),
            head=_head,
            cam_layer="features",
            torchvision_name=_name,
            min_size=1,
            channels_last=True,
            cpu_bf16=False,
        )
    )
