"""Every optimizer, at its default learning rate, lowers the training loss on digits."""

from __future__ import annotations

import pytest
import torch

from imgcls.config import OPTIMIZERS, TrainConfig
from imgcls.data.normalize import Normalizer, compute_stats
from imgcls.data.sources import load_source
from imgcls.models import create_model
from imgcls.training.optim import build_optimizer

pytestmark = pytest.mark.slow

STEPS = 200
BATCH = 64


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    image_set = load_source("digits")
    return Normalizer(compute_stats(image_set.images, "meanstd"))(image_set.images), \
        image_set.labels


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_lowers_training_loss(name: str, digits: tuple[torch.Tensor, ...]) -> None:
    images, labels = digits
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10, in_channels=1, image_size=32)
    optimizer = build_optimizer(model, TrainConfig(optimizer=name))
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(STEPS):
        batch = torch.randint(len(images), (BATCH,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.5 * first, f"{name}: loss {first:.3f} -> {last:.3f}"


def test_weight_decay_spares_biases_and_norms() -> None:
    model = create_model("resnet18", num_classes=10, in_channels=1, image_size=32)
    optimizer = build_optimizer(model, TrainConfig(optimizer="sgd", weight_decay=0.1))
    decayed, spared = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and spared["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"])
    assert all(p.ndim <= 1 for p in spared["params"]) and spared["params"]
