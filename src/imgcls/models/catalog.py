"""The networks `imgcls models` lists: which fit the input size, and each one's size, cost and
CPU practicality (estimated, speed.py's rule) or its measured speed on this machine (--bench).

describe_models and bench_models check the request, leave out the networks too big for the
image, and return typed rows; the CLI prints them as tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imgcls.errors import UserError
from imgcls.models import speed
from imgcls.models.info import count_parameters, mflops
from imgcls.models.registry import create_model, get_spec, list_models

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class CatalogRequest:
    """Which networks (None: every registered one), at what input, and for --bench how."""

    names: list[str] | None = None
    image_size: int = 32
    channels: int = 3
    num_classes: int = 10
    images: int = 60_000  # training images in an epoch, for the epoch time
    batch_size: int = 128  # --bench
    seconds: float = 1.5  # --bench: time each network's training and inference this long

    @property
    def shape(self) -> str:
        return f"{self.channels}x{self.image_size}x{self.image_size}"


@dataclass(frozen=True)
class LeftOut:
    name: str
    min_size: int  # the smallest input it takes, in pixels


@dataclass(frozen=True)
class ModelRow:
    """One network's size and estimated cost at the request's input."""

    name: str
    family: str
    parameters: int
    mflops: float  # one forward pass of one image
    epoch_seconds: float  # estimated, for the request's `images`
    cpu_practical: bool
    compact: bool
    imagenet_weights: bool


@dataclass(frozen=True)
class ModelTable:
    left_out: list[LeftOut]  # too big for the image
    rows: list[ModelRow]


@dataclass(frozen=True)
class BenchTable:
    """`rows` measures each network as it is iterated, calling `measuring(name)` first."""

    left_out: list[LeftOut]
    threads: int  # torch's intra-op threads the measurements run on
    rows: Iterator[speed.Throughput] = field(repr=False)


def describe_models(request: CatalogRequest) -> ModelTable:
    """Size, MFLOPs and the estimated epoch of each requested network that fits the image."""
    fits, left_out = _select(request)
    return ModelTable(left_out, [_row(name, request) for name in fits])


def bench_models(request: CatalogRequest,
                 measuring: Callable[[str], None] = lambda name: None) -> BenchTable:
    """Training and inference speed of the named networks that fit the image, or, when no
    names are given, of the CPU-practical ones (all of them would take minutes)."""
    import torch

    fits, left_out = _select(request)
    if not request.names:
        fits = [name for name in fits if speed.cpu_practical(_mflops(name, request))]
    return BenchTable(left_out, torch.get_num_threads(), _measure(fits, request, measuring))


def _select(request: CatalogRequest) -> tuple[list[str], list[LeftOut]]:
    names = request.names or list_models()
    for name in names:
        get_spec(name)  # an unknown name is a user error before anything is built
    if request.batch_size < 1 or request.images < 1 or request.seconds <= 0:
        raise UserError("--batch-size, --images and --seconds must be positive")
    fits = [name for name in names if get_spec(name).min_size <= request.image_size]
    return fits, [LeftOut(name, get_spec(name).min_size) for name in names if name not in fits]


def _build(name: str, request: CatalogRequest) -> nn.Module:
    return create_model(name, num_classes=request.num_classes, in_channels=request.channels,
                        image_size=request.image_size)


def _mflops(name: str, request: CatalogRequest) -> float:
    return mflops(_build(name, request), request.channels, request.image_size)


def _row(name: str, request: CatalogRequest) -> ModelRow:
    model, spec = _build(name, request), get_spec(name)
    cost = mflops(model, request.channels, request.image_size)
    return ModelRow(name=name, family=spec.family, parameters=count_parameters(model),
                    mflops=cost, epoch_seconds=speed.estimated_epoch_seconds(cost, request.images),
                    cpu_practical=speed.cpu_practical(cost), compact=spec.compact,
                    imagenet_weights=bool(spec.torchvision_name))


def _measure(names: list[str], request: CatalogRequest,
             measuring: Callable[[str], None]) -> Iterator[speed.Throughput]:
    for name in names:
        measuring(name)
        yield speed.measure_throughput(
            name, image_size=request.image_size, channels=request.channels,
            num_classes=request.num_classes, batch_size=request.batch_size,
            seconds=request.seconds)
