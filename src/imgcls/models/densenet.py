"""DenseNet-121 (ImageNet weights load) and the CIFAR DenseNet-BC (Huang et al. 2017), L=40, 100.

DenseNet-BC (table 2 of the paper, k=12): three dense blocks of (L-4)/6 bottleneck layers
(BN-ReLU-conv1x1 to 4k, BN-ReLU-conv3x3 to k), transitions that halve the channels
(compression 0.5) and the map, a stem of 2k channels. L=100 has about 0.77M parameters, L=40
about 0.18M. `densenet_bc` is the L=100 network under its earlier name.

All of them are torchvision's DenseNet class (its modules, keys and initialization), so files
trained with earlier versions still load. Its stem keeps torchvision's BN-ReLU after conv0,
which the paper's CIFAR stem (a bare conv) does not have: 2k x 2 parameters, kept so the
layout stays torchvision's. Small images (<= 64 px) get a 3x3 stride-1 conv0 and no pool0,
where the ImageNet stem would shrink 32 px to 8 before the first block. width scales the
growth rate and the stem channels.

In training mode the features run dense_train.py's forward: the same function as
torchvision's (the tests compare them), with each map normalized once and no concatenation.
bench/model_throughput.py: 1.6-1.8x torchvision's training images/s for DenseNet-BC-100 in
bf16 (the registry's setting on a CPU with native bf16), 1.4-1.5x in fp32, 2 threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from torch import nn

from imgcls.models.layers import is_small_input, replace_activations, scaled
from imgcls.models.registry import ModelSpec, register

if TYPE_CHECKING:
    from imgcls.models.densenet_module import DenseNet


@dataclass(frozen=True)
class _Config:
    growth_rate: int
    block_config: tuple[int, ...]
    num_init_features: int


def _bc_config(depth: int, growth_rate: int = 12) -> _Config:
    """DenseNet-BC for CIFAR: (depth - 4) / 6 bottleneck layers (two convs each) per block,
    plus the stem conv, two transition convs and the classifier, make `depth` layers."""
    return _Config(growth_rate, ((depth - 4) // 6,) * 3, num_init_features=2 * growth_rate)


_CONFIGS = {
    "densenet121": _Config(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64),
    "densenet_bc_40": _bc_config(40),
    "densenet_bc_100": _bc_config(100),
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
    # Imported when a DenseNet is built: its class derives from torchvision's, and torchvision
    # takes ~2 s to import, which loading a model of another family should not pay.
    from imgcls.models.densenet_module import DenseNet

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
        cam_layer="final_activation",
        torchvision_name="densenet121",
    )
)
# bf16 autocast trains both faster; the memory format matters less, since the training
# forward keeps the dense blocks in its own layout. A training step at batch 128, 1x28x28, on
# one core of a 2-core AVX512-BF16 EPYC (CPU time, another session busy on the other core),
# images/s over two rounds: densenet_bc_100 bf16 channels_last 55-65, bf16 contiguous 59-62,
# fp32 channels_last 22-26, fp32 contiguous 20-22; densenet_bc_40 245-252, 225-254, 75-80,
# 93-102. So channels_last for L=100 and contiguous for L=40 (fp32 decides: bf16 is even).
# "densenet_bc" is the L=100 network's earlier name: the same builder, so its files load.
for _name, _config, _channels_last in (
    ("densenet_bc_40", "densenet_bc_40", False),
    ("densenet_bc_100", "densenet_bc_100", True),
    ("densenet_bc", "densenet_bc_100", True),
):
    register(
        ModelSpec(
            _name,
            "densenet",
            partial(build_densenet, _CONFIGS[_config]),
            head="classifier",
            cam_layer="final_activation",
            torchvision_name=None,
            channels_last=_channels_last,
            cpu_bf16=True,
            compact=True,
        )
    )
