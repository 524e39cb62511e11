"""ResNet 18/34/50 as torchvision's ResNet class, so its ImageNet weights load.

Small images (<= 64 px) get the CIFAR stem of He et al. (2016, section 4.2): a 3x3 stride-1
conv1 and no max pool, where the ImageNet stem (7x7 stride 2, then a pool) would turn 32 px
into 8 before the first block. width scales every stage's planes; module names are unchanged.
Dropout, when asked for, sits after the global pool (which has no weights) so that `fc` stays
the bare Linear the registry names as the head and torchvision's keys stay as they are.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from torch import nn

from imgcls.models.layers import is_small_input, replace_activations, scaled
from imgcls.models.registry import ModelSpec, register

if TYPE_CHECKING:
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

_STAGE_PLANES = (64, 128, 256, 512)


def build_resnet(
    block_name: str,
    layers: list[int],
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    activation: str = "relu",
    dropout: float = 0.0,
    width: float = 1.0,
) -> ResNet:
    """`block_name`: torchvision's block class, "BasicBlock" or "Bottleneck"."""
    # Imported here, not at the top: see build_vgg.
    from torchvision.models import resnet

    block = getattr(resnet, block_name)
    model = resnet.ResNet(block, layers, num_classes=num_classes)
    if width != 1.0:
        _rebuild_stages(model, block, layers, width)
    stem_channels = model.bn1.num_features
    if is_small_input(image_size):
        model.conv1 = nn.Conv2d(in_channels, stem_channels, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
    _init_like_torchvision(model)
    if dropout > 0:
        model.avgpool = nn.Sequential(model.avgpool, nn.Dropout(dropout))
    replace_activations(model, activation)
    return model


def _rebuild_stages(
    model: ResNet, block: type[BasicBlock | Bottleneck], layers: list[int], width: float
) -> None:
    """Rebuild stem norm, stages and fc with scaled planes, the way ResNet.__init__ does.

    torchvision hard-codes 64..512 planes, so the stages are built again with its own
    _make_layer (unchanged since torchvision 0.2), which reads the running `inplanes`.
    """
    planes = [scaled(p, width) for p in _STAGE_PLANES]
    model.inplanes = planes[0]
    model.bn1 = nn.BatchNorm2d(planes[0])
    for stage, (stage_planes, blocks) in enumerate(zip(planes, layers, strict=True)):
        stride = 1 if stage == 0 else 2
        setattr(model, f"layer{stage + 1}", model._make_layer(block, stage_planes, blocks, stride))
    model.fc = nn.Linear(planes[-1] * block.expansion, model.fc.out_features)


def _init_like_torchvision(model: ResNet) -> None:
    """ResNet.__init__'s initialization, again, for the layers replaced after it ran."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


_DEPTHS: dict[str, tuple[str, list[int]]] = {  # torchvision's block class, by name
    "resnet18": ("BasicBlock", [2, 2, 2, 2]),
    "resnet34": ("BasicBlock", [3, 4, 6, 3]),
    "resnet50": ("Bottleneck", [3, 4, 6, 3]),
}

for _name, (_block, _layers) in _DEPTHS.items():
    register(
        ModelSpec(
            _name,
            "resnet",
            partial(build_resnet, _block, _layers),
            head="fc",
            cam_layer="layer4",
            torchvision_name=_name,
        )
    )
