"""Pretrained weights: fetch torchvision's, read a local file, load what fits, freeze the rest.

Loading is lenient by design: a model built for 10 classes, 1 channel and 28 px images shares
most but not all tensors with its ImageNet original, and each tensor that fits is worth having.
Not so lenient that another network's file passes: weights that fit under half of the model
are refused (MIN_SHARE_THAT_FITS).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from imgcls.errors import UserError
from imgcls.models.imagenet_weights import (
    ImageNetWeights,
    cached_weights_file,
    imagenet_weights,
)
from imgcls.models.registry import ModelSpec
from imgcls.models.weights_file import read_state_dict_file

IMAGENET = "imagenet"  # --pretrained without a path: torchvision's ImageNet weights
# Weights that fill less than this share of a model (its numbers outside the head) are another
# network's. Measured with torchvision's state dicts for every registered torchvision network:
# its own fill 100% at 224 px, 92-95% at 28-32 px (VGG's first classifier layer is resized),
# any --width but 1 under 1%; another family's (mobilenet_v2 into resnet18, ...) under 0.1%.
# Within a family a deeper ResNet's fill much of a shallower one (resnet50's 53% of resnet34):
# shares, not names, decide, so such a file loads with its report.
MIN_SHARE_THAT_FITS = 0.5

# torchvision's DenseNet checkpoints predate its module names: "denselayer1.norm.1.weight" is
# "denselayer1.norm1.weight" today. torchvision renames them in densenet._load_state_dict.
_LEGACY_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)  # copied as they were
    adapted: list[str] = field(default_factory=list)  # first conv, remapped to in_channels
    skipped: dict[str, str] = field(default_factory=dict)  # source key -> why it was not used
    missing: list[str] = field(default_factory=list)  # model keys left as initialized


def load_compatible(
    model: nn.Module, state_dict: Mapping[str, Tensor], *, head: str, in_channels: int,
    flag: str = "--pretrained", source: str | None = None,
) -> LoadReport:
    """Load every tensor of `state_dict` whose key and shape match `model`, in place.

    The head (keys under `head + "."`) is skipped: it is sized for the source's classes. The
    first conv's weight is adapted when only its input channels differ. Anything else whose
    shape differs (a small-input stem, a resized classifier) is skipped, with the reason.
    Weights that fill under MIN_SHARE_THAT_FITS of the model are another network's: refused,
    naming `source` (the file) when given.
    """
    target = model.state_dict()
    first_conv_key = _first_conv_weight_key(model)
    report = LoadReport()
    to_load: dict[str, Tensor] = {}
    for key, tensor in _modern_keys(state_dict).items():
        if key.startswith(head + "."):
            report.skipped[key] = "classifier head, sized for the source's classes"
        elif key not in target:
            report.skipped[key] = "no such tensor in this model"
        elif tensor.shape == target[key].shape:
            to_load[key] = tensor
            report.loaded.append(key)
        elif key == first_conv_key and _differs_in_input_channels(tensor, target[key]):
            to_load[key] = _adapt_input_conv(tensor, in_channels)
            report.adapted.append(key)
        else:
            report.skipped[key] = (
                f"shape {tuple(tensor.shape)} does not fit the model's {tuple(target[key].shape)}"
            )
    share = _share_filled(target, to_load, head)
    if share < MIN_SHARE_THAT_FITS:
        # --init-from names an imgcls file, which records its own architecture.
        fix = ("leave out --model to build the file's own architecture" if flag == "--init-from"
               else f"pass weights made for this --model at its default --width, or drop {flag}")
        raise UserError(
            f"{source or f'the {flag} weights'}: only {share:.1%} of this model's weights fit"
            f" ({len(to_load)} of {len(state_dict)} tensors): the weights are for another"
            f" architecture or width — {fix}"
        )
    model.load_state_dict(to_load, strict=False)
    report.missing = [key for key in target if key not in to_load]
    return report


def _share_filled(target: Mapping[str, Tensor], fitting: Mapping[str, Tensor], head: str) -> float:
    """The share of the model's numbers outside its head that the fitting tensors fill."""
    sizes = {key: tensor.numel() for key, tensor in target.items()
             if not key.startswith(head + ".")}
    total = sum(sizes.values())
    return sum(sizes.get(key, 0) for key in fitting) / total if total else 1.0


def _adapt_input_conv(weight: Tensor, in_channels: int) -> Tensor:
    """Remap a conv weight (out, in, kh, kw) to `in_channels` inputs, as timm's adapt_input_conv.

    RGB to grey sums over the colours, so a grey image x gives what the RGB image (x, x, x)
    would. Other counts repeat the channels cyclically and rescale to keep activations' size.
    """
    source_channels = weight.shape[1]
    weight = weight.float()
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // source_channels)  # ceiling division
    repeated = weight.repeat(1, repeats, 1, 1)[:, :in_channels]
    return repeated * (source_channels / in_channels)


def load_pretrained(
    model: nn.Module, spec: ModelSpec, given: str, *, in_channels: int
) -> LoadReport:
    """--pretrained: torchvision's ImageNet weights (`given` "imagenet") or a local state-dict
    file, read with its checks and loaded where it fits; errors name the file."""
    path = torchvision_weights_file(spec) if given == IMAGENET else Path(given)
    return load_compatible(model, read_state_dict_file(path), head=spec.head,
                           in_channels=in_channels, source=str(path))


def torchvision_state_dict(spec: ModelSpec) -> dict[str, Tensor]:
    """torchvision's default ImageNet weights for the model, checked like any local file."""
    return read_state_dict_file(torchvision_weights_file(spec))


def torchvision_weights_file(spec: ModelSpec) -> Path:
    """torchvision's cached file of the model's ImageNet weights, downloaded (and its sha256
    checked) first when the cache has none. The cached file is checked when it is read: its
    name carries its sha256 prefix."""
    if spec.torchvision_name is None:
        raise UserError(
            f"{spec.name} has no ImageNet weights — train it from scratch (drop --pretrained)"
        )
    record = imagenet_weights(spec.torchvision_name)
    cached = record.cached_path()
    if cached.is_file():
        return cached
    earlier = cached_weights_file(spec.torchvision_name)  # another release's, also ImageNet's
    if earlier is not None:
        return earlier
    download(record, cached)
    return cached


def download(record: ImageNetWeights, destination: Path) -> None:
    """torch.hub's download: to a temporary file, its sha256 checked, then moved in place."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(record.url, str(destination),
                                       hash_prefix=record.sha256_prefix, progress=True)
    except OSError as error:  # URLError, socket and HTTP errors are all OSErrors
        raise UserError(
            f"cannot download the ImageNet weights of {record.network} (offline? {error})"
            f" — pass --pretrained PATH to a local torchvision state-dict file, or put"
            f" {record.file_name} in {destination.parent}"
        ) from error
    except RuntimeError as error:  # torch.hub: 'invalid hash value (expected ..., got ...)'
        raise UserError(
            f"the download of {record.url} was damaged ({error}) — run again"
        ) from error


def freeze_backbone(model: nn.Module, head: str) -> int:
    """Train only the head: every other parameter stops needing gradients. Returns the number
    of trainable parameters left. Gradients are not all: train such a model in
    `train_head_only` mode, or its BatchNorm layers keep moving their running statistics."""
    trainable = 0
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(head + ".")
        if parameter.requires_grad:
            trainable += parameter.numel()
    return trainable


def train_head_only(model: nn.Module, trained: list[nn.Module]) -> None:
    """Training mode for the `trained` modules alone (the head, its dropout), eval mode for the
    frozen rest: there BatchNorm uses and keeps its running statistics and dropout is off, so
    the backbone computes the same function every epoch — what makes its features cacheable."""
    model.eval()
    for module in trained:
        module.train()


def dropout_before_head(model: nn.Module, head: str, input_shape: tuple[int, ...]) -> str | None:
    """The name of the Dropout whose output is the head's input, if the model has one there.

    Found by running one blank image and noting which leaf module ran last before the head:
    the order modules are registered in does not tell (DenseNet registers its dropout after
    its classifier). The model runs in eval mode, so the probe changes no statistics and
    draws no random numbers."""
    head_module = model.get_submodule(head)
    ran: list[nn.Module] = []
    before_head: list[nn.Module | None] = []
    leaves = [m for m in model.modules() if not any(m.children()) and m is not head_module]
    handles = [m.register_forward_hook(lambda module, args, out: ran.append(module))
               for m in leaves]
    handles.append(head_module.register_forward_pre_hook(
        lambda module, args: before_head.append(ran[-1] if ran else None)))
    modes = {module: module.training for module in model.modules()}
    parameter = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=parameter.device))
    finally:
        for module, training in modes.items():
            module.training = training
        for handle in handles:
            handle.remove()
    last = before_head[0] if before_head else None
    if not isinstance(last, nn.Dropout):
        return None
    return next(name for name, module in model.named_modules() if module is last)


def _modern_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {_LEGACY_DENSENET_KEY.sub(r"\1\2", key): tensor for key, tensor in state_dict.items()}


def _first_conv_weight_key(model: nn.Module) -> str | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight"
    return None


def _differs_in_input_channels(source: Tensor, target: Tensor) -> bool:
    same_outputs_and_kernel = source.shape[0] == target.shape[0] and (
        source.shape[2:] == target.shape[2:]
    )
    return source.dim() == 4 and same_outputs_and_kernel

