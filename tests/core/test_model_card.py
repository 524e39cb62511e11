"""The model card: typed, versioned, read from today's (format 1) headers too; and the
runtime choices it records, which prediction follows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import imgcls
from imgcls.errors import UserError
from imgcls.modelfile.artifact import METADATA_KEY, read_card
from imgcls.modelfile.card import FORMAT_VERSION, ModelCard
from imgcls.modelfile.rundir import RunDir, resolve_model_path
from imgcls.models import create_model

# A header exactly as imgcls wrote it before the card was typed (format 1).
FORMAT_1_HEADER = {
    "format_version": 1,
    "architecture": {"name": "resnet20", "kwargs": {"num_classes": 3, "in_channels": 1,
                                                    "image_size": 32}},
    "class_names": ["a", "b", "c"],
    "input": {"channels": 1, "height": 32, "width": 32},
    "normalization": {"mode": "meanstd", "mean": [0.5], "std": [0.25]},
    "metrics": {"split": "test", "accuracy": 0.5},
    "training": {"config": {"data": "digits", "model": "resnet20"}, "best_epoch": 2},
    "data": {"source": "digits", "split_hash": "abc"},
    "versions": {"imgcls": "0.1.0", "torch": "2.5.0", "torchvision": "0.20.0"},
}


def write_format_1(folder: Path) -> Path:
    model = create_model("resnet20", num_classes=3, in_channels=1, image_size=32)
    tensors = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    path = folder / RunDir.MODEL
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(FORMAT_1_HEADER)})
    return path


def test_a_format_1_file_loads_and_migrates(tmp_path: Path) -> None:
    card = read_card(write_format_1(tmp_path))
    assert card.model_name == "resnet20" and card.class_names == ["a", "b", "c"]
    assert card.input.chw == (1, 32, 32) and card.input.size == 32
    assert card.training is not None and card.training.best_epoch == 2
    assert card.data is not None and card.data.split_hash == "abc"
    assert card.runtime is None  # format 1 did not record it
    header = card.to_header()
    assert header["format_version"] == FORMAT_VERSION
    assert {k: v for k, v in header.items() if k != "format_version"} == {
        k: v for k, v in FORMAT_1_HEADER.items() if k != "format_version"}
    # Without the record, prediction falls back to the network's default (resnet20: NHWC).
    predictor = imgcls.load(tmp_path)
    assert predictor.runtime is not None and predictor.runtime.channels_last


def test_the_header_round_trips_and_keeps_unknown_sections() -> None:
    header = {**FORMAT_1_HEADER, "format_version": FORMAT_VERSION,
              "runtime": {"channels_last": False, "precision": "bf16"},
              "export": {"format": "onnx"}}
    card = ModelCard.from_header(header)
    assert card.runtime is not None and not card.runtime.channels_last
    assert card.extra == {"export": {"format": "onnx"}}
    assert card.to_header() == header


def test_a_newer_format_is_refused() -> None:
    with pytest.raises(UserError, match="upgrade imgcls"):
        ModelCard.from_header({**FORMAT_1_HEADER, "format_version": FORMAT_VERSION + 1})


def test_a_model_file_or_a_run_directory(tmp_path: Path) -> None:
    assert resolve_model_path(tmp_path) == tmp_path / "model.safetensors"
    assert resolve_model_path(tmp_path / "x.safetensors") == tmp_path / "x.safetensors"
    file = write_format_1(tmp_path)
    assert RunDir.of_model(file) == RunDir.of_model(tmp_path) == RunDir(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("channels_last", [True, False])
def test_prediction_uses_the_memory_format_training_used(channels_last: bool,
                                                         tmp_path: Path) -> None:
    # resnet20 trains in channels_last unless --no-channels-last says otherwise.
    run_dir = imgcls.train(data="digits", model="resnet20", epochs=0.2, batch_size=64,
                           precision="fp32", channels_last=channels_last, threads=1,
                           output=str(tmp_path / "run"), show_progress=False)
    card = read_card(run_dir)
    assert card.runtime is not None and card.runtime.channels_last is channels_last
    predictor = imgcls.load(run_dir)
    assert predictor.runtime is not None and predictor.runtime.channels_last is channels_last
    conv = next(p for p in predictor.model.parameters() if p.ndim == 4 and p.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert conv.is_contiguous() is not channels_last
