"""--model auto on photos starts from ImageNet weights when a file is at hand, fits the head
first, then fine-tunes at discriminative rates; without weights it says why and trains from
scratch. Every weights file here is made by the test (torchvision's architecture, random
weights, named as torch.hub names downloads); nothing is downloaded (IMGCLS_OFFLINE)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from rich.console import Console
from sklearn.linear_model import LogisticRegression
from torch import nn

import imgcls
from imgcls.config import TrainConfig
from imgcls.errors import UserError
from imgcls.modelfile.artifact import read_card
from imgcls.models.weights_file import file_sha256
from imgcls.runtime import RuntimeChoice
from imgcls.training import auto_pretrained
from imgcls.training.auto_pretrained import SCRATCH_MODEL, choose_pretrained
from imgcls.training.head_first import discriminative_scales, fit_head
from imgcls.training.optim import build_optimizer

from imagefolder import write_folder

SMALL = "mobilenet_v3_small"
SHAPE = {"channels": 3, "image_size": 72, "num_classes": 3}


def _hub_file(folder: Path, network: str) -> Path:
    """A torchvision-architecture weights file named `<network>-<sha256 prefix>.pth`."""
    torch.manual_seed(0)
    loose = folder / f"{network}.pth"
    torch.save(torchvision.models.get_model(network, weights=None).state_dict(), loose)
    named = folder / f"{network}-{file_sha256(loose)[:8]}.pth"
    loose.rename(named)
    return named


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(auto_pretrained.OFFLINE_VARIABLE, "1")
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    return checkpoints


def test_a_cached_file_is_used_and_named(torch_home: Path) -> None:
    cached = _hub_file(torch_home, SMALL)
    choice = choose_pretrained(None, **SHAPE)
    assert (choice.model, choice.weights) == (SMALL, str(cached))
    assert str(cached) in choice.reason


def test_without_weights_it_says_why_and_trains_from_scratch(torch_home: Path) -> None:
    choice = choose_pretrained(None, **SHAPE)
    assert (choice.model, choice.weights) == (SCRATCH_MODEL, None)
    assert "no ImageNet weights at hand" in choice.reason
    assert auto_pretrained.OFFLINE_VARIABLE in choice.reason
    # Asked for by name, missing weights are an error, not a silent fallback.
    with pytest.raises(UserError, match="nothing is downloaded"):
        choose_pretrained("imagenet", **SHAPE)


def test_no_pretrained_trains_from_scratch_even_with_weights_cached(torch_home: Path) -> None:
    _hub_file(torch_home, SMALL)
    choice = choose_pretrained("none", **SHAPE)
    assert (choice.model, choice.weights) == (SCRATCH_MODEL, None)


def test_a_given_file_decides_the_network_by_its_name_or_by_what_it_fills(
    tmp_path: Path, torch_home: Path
) -> None:
    named = _hub_file(tmp_path, SMALL)
    assert choose_pretrained(str(named), **SHAPE).model == SMALL
    plain = named.rename(tmp_path / "my-weights.pth")  # the name says nothing: shapes decide
    choice = choose_pretrained(str(plain), **SHAPE)
    assert choice.model == SMALL
    # the user's file may not be ImageNet's: the line says where it is from, not what it is
    assert choice.reason == f"--pretrained weights from {plain}"
    torch.save(nn.Linear(4, 2).state_dict(), tmp_path / "other.pth")
    with pytest.raises(UserError, match="other.pth: the file holds weights of none"):
        choose_pretrained(str(tmp_path / "other.pth"), **SHAPE)


def test_discriminative_rates_span_lr_over_lr_mult_to_lr() -> None:
    model = torchvision.models.mobilenet_v3_small(num_classes=3)
    config = TrainConfig(optimizer="adamw", lr=1e-3)
    scales = discriminative_scales(model, "classifier.3", config.lr_mult)
    optimizer = build_optimizer(model, config, scales)
    rate_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert rate_of[id(named["classifier.3.weight"])] == pytest.approx(1e-3)
    assert rate_of[id(named["features.0.0.weight"])] == pytest.approx(1e-5)
    assert rate_of[id(named["classifier.0.weight"])] == pytest.approx(1e-4)
    assert len(rate_of) == len(named)  # every parameter trains, once
    # Without scales, one rate: --lr.
    plain = build_optimizer(model, config)
    assert {group["lr"] for group in plain.param_groups} == {1e-3}


def test_the_fitted_head_is_the_logistic_regression_of_the_features() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    images = torch.randint(0, 256, (90, 3, 2, 2), dtype=torch.uint8)
    labels = torch.arange(90) % 3
    images[labels == 1, 0] = 255  # a class the features can tell apart
    normalizer = nn.Identity()
    runtime = RuntimeChoice(device=torch.device("cpu"), dtype=None, channels_last=False,
                            threads=1)
    fit_head(model, "3", [(images[:45].float(), labels[:45]), (images[45:].float(),
                                                                 labels[45:])],
             normalizer, runtime, Console(quiet=True), num_classes=3)
    with torch.no_grad():
        features = model[:3](images.float()).numpy()
        predicted = model(images.float()).argmax(dim=1).numpy()
    reference = LogisticRegression(C=1.0, max_iter=500).fit(features, labels.numpy())
    assert np.array_equal(predicted, reference.predict(features))


@pytest.mark.slow
def test_auto_on_photos_fine_tunes_the_cached_weights(tmp_path: Path, torch_home: Path) -> None:
    cached = _hub_file(torch_home, SMALL)
    source = torch.load(cached, weights_only=True)
    photos = write_folder(tmp_path / "photos", per_class=6)
    run = imgcls.train(data=str(photos), image_size=72, channels=3, epochs=1, batch_size=8,
                       precision="fp32", output=str(tmp_path / "run"), show_progress=False)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["model"], config["pretrained"]) == (SMALL, str(cached))
    card = read_card(run / "model.safetensors")
    # ImageNet's normalization, not the photos' own statistics.
    assert card.normalization["mean"] == pytest.approx([0.485, 0.456, 0.406])
    trained = imgcls.modelfile.artifact.read_weights(run / "model.safetensors")
    # Fine-tuned: every layer moved, the first the least (lr/lr_mult), from the file's weights.
    first = (trained["features.0.0.weight"] - source["features.0.0.weight"]).abs().max()
    assert 0 < first < 1e-2
    # BatchNorm normalizes with the weights' own running statistics throughout, and keeps them.
    for key in ("features.0.1.running_mean", "features.12.1.running_var"):
        assert torch.equal(trained[key], source[key]), key
    # The fine-tuning recipe's settings, where the call left them open (batch_size it gave).
    assert (config["recipe"], config["lr"], config["batch_size"]) == (
        "pretrained-finetune", pytest.approx(2e-3), 8)


@pytest.mark.slow
def test_no_pretrained_on_photos_trains_from_scratch(tmp_path: Path, torch_home: Path) -> None:
    _hub_file(torch_home, SMALL)
    photos = write_folder(tmp_path / "photos", per_class=6)
    run = imgcls.train(data=str(photos), image_size=72, channels=3, epochs=1, batch_size=8,
                       pretrained="none", precision="fp32", output=str(tmp_path / "run"),
                       show_progress=False)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["model"], config["pretrained"]) == (SCRATCH_MODEL, "none")
