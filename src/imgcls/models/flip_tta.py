"""Flip test-time augmentation as part of the network: in eval mode the logits are the
average of the image's and its mirror image's.

It lives in the network, not in an evaluation loop, so that training's final evaluation,
`imgcls eval`, the Predictor, the service and every exported ONNX file give the same
answer: they all run the model's forward. The model keeps its class (as a subclass), its
module names and its state-dict keys, so weights, freezing, EMA and the feature cache see
the network they know. Training mode is untouched.

Measured on the weights of the densenet_bc_40 recipe's hour-long run on Fashion-MNIST (trained
without it): test accuracy 0.9421 plain, 0.9467 with the flip average (bench/flip_tta.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial
from typing import Any, SupportsIndex

from torch import Tensor, nn

from imgcls.config import TTA_CHOICES
from imgcls.errors import UserError


class _FlipAverage(nn.Module):
    """Mixed in before a network's own class (see with_flip_average)."""

    network_class: type[nn.Module]  # the class it was mixed into
    flip_head: str  # the head module's name: the average runs when it, too, is in eval mode

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        # The generated subclass has no importable name, so pickle (torch.save of the whole
        # module) and deepcopy see the network's own class and mix the average in again.
        averaged = type(self)
        self.__class__ = averaged.network_class
        try:
            plain = self.__reduce_ex__(protocol)
        finally:
            self.__class__ = averaged
        return (_rebuild, (plain,))

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        logits = super().forward(x)
        # A frozen backbone trains with the network in eval mode and its head in train mode
        # (models.pretrained.train_head_only): that is training, and sees each image once.
        if self.training or self.get_submodule(self.flip_head).training:
            return logits
        # Averaging logits, not probabilities: one graph for every backend, and on the
        # DenseNet above the two differ by one image in 10,000.
        return (logits + super().forward(x.flip(-1))) / 2


@cache
def _averaged_class(network_class: type[nn.Module]) -> type[nn.Module]:
    name = f"{network_class.__name__}FlipAverage"
    return type(name, (_FlipAverage, network_class),
                {"__module__": network_class.__module__, "network_class": network_class})


def _rebuild(plain: tuple[Any, ...]) -> nn.Module:
    """The inverse of _FlipAverage.__reduce_ex__: the plain network rebuilt as copy and
    pickle would, then averaged again."""
    make, args, state = plain[:3]
    model = make(*args)
    model.__setstate__(state)
    return with_flip_average(model, head=state["flip_head"])


def with_flip_average(model: nn.Module, *, head: str) -> nn.Module:
    """`model` itself, its eval-mode forward now averaging over a horizontal flip; `head`
    names its classifier module (the registry's ModelSpec.head)."""
    if not isinstance(model, _FlipAverage):
        model.__class__ = _averaged_class(type(model))
    model.flip_head = head
    return model


def plain_forward(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """`model`'s forward without the flip average: one pass of the image as given. Grad-CAM
    needs it (evaluation/explain.py): it records one pass of a layer, and under the average
    the layer runs twice, so the map kept would be the mirror image's."""
    if isinstance(model, _FlipAverage):
        return partial(model.network_class.forward, model)
    return model


def check_tta(tta: str) -> None:
    if tta not in TTA_CHOICES:
        raise UserError(f"unknown test-time augmentation {tta!r}; choose one of "
                        f"{', '.join(TTA_CHOICES)} — e.g. --tta hflip")
