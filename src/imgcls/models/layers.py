"""Small building blocks the model families share: activations, width scaling, MLP resizing."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from imgcls.errors import UserError

# Images up to this size get a small-input stem (stride-1 first conv, fewer early poolings), so a
# 28 or 32 px image is not shrunk to nothing before the deep layers see it.
SMALL_INPUT_MAX = 64

# Not in place: a replacement may sit where torchvision reuses one module twice (ResNet blocks),
# and GELU/Tanh/Sigmoid have no in-place form anyway.
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}


def check_activation(name: str) -> None:
    if name not in _ACTIVATIONS:
        raise UserError(
            f"unknown activation {name!r}; choose one of {', '.join(_ACTIVATIONS)} (--activation)"
        )


def make_activation(name: str) -> nn.Module:
    check_activation(name)
    return _ACTIVATIONS[name]()


def replace_activations(
    model: nn.Module, name: str, kinds: tuple[type[nn.Module], ...] = (nn.ReLU,)
) -> None:
    """Swap every module of `kinds` (nn.ReLU unless told) in `model` for the named activation;
    those already of its type stay, so "relu" keeps a network's ReLUs as they are."""
    check_activation(name)
    wanted = _ACTIVATIONS[name]
    # Collected first: replacing children while walking the module tree would change the walk.
    targets = [
        (parent, child_name)
        for parent in model.modules()
        for child_name, child in parent.named_children()
        if isinstance(child, kinds) and type(child) is not wanted
    ]
    for parent, child_name in targets:
        setattr(parent, child_name, make_activation(name))


def scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def is_small_input(image_size: int) -> bool:
    return image_size <= SMALL_INPUT_MAX


def resize_linears(mlp: nn.Sequential, in_features: int, hidden: int) -> None:
    """Rebuild the Linears of a classifier MLP for new input and hidden widths.

    Each Linear keeps its index, so state-dict keys stay torchvision's; the last keeps its
    output size (the number of classes). New layers get PyTorch's default initialization.
    """
    positions = [i for i, module in enumerate(mlp) if isinstance(module, nn.Linear)]
    features = in_features
    for i in positions:
        out_features = mlp[i].out_features if i == positions[-1] else hidden
        mlp[i] = nn.Linear(features, out_features)
        features = out_features
