"""The Predictor takes paths, PIL images and arrays alike, and survives bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import imgcls
from imgcls.cli import main
from imgcls.data.sources import load_source
from imgcls.modelfile.artifact import save_model
from imgcls.modelfile.card import ModelCard
from imgcls.models import create_model


@pytest.fixture(scope="module")
def digit_images() -> np.ndarray:
    return load_source("digits").images[:6, 0].numpy()


def test_paths_pil_and_arrays_agree(digits_run: Path, digit_images: np.ndarray,
                                    tmp_path: Path) -> None:
    predictor = imgcls.load(digits_run)
    paths = []
    for index, pixels in enumerate(digit_images):
        paths.append(tmp_path / f"digit{index}.png")
        Image.fromarray(pixels).save(paths[-1])
    from_paths = predictor.predict(paths)
    from_pil = predictor.predict([Image.fromarray(p).convert("RGB") for p in digit_images])
    from_float_arrays = predictor.predict([p.astype(np.float32) / 255 for p in digit_images])
    for a, b, c in zip(from_paths, from_pil, from_float_arrays, strict=True):
        assert a.label == b.label == c.label
        assert a.score == pytest.approx(b.score, abs=1e-4)
        assert a.score == pytest.approx(c.score, abs=1e-4)
        assert len(a.topk) == 5 and a.topk[0]["label"] == a.label
        assert sum(t["score"] for t in a.topk) <= 1 + 1e-6


def test_single_input_and_bad_inputs(digits_run: Path, digit_images: np.ndarray,
                                     tmp_path: Path) -> None:
    predictor = imgcls.load(digits_run / "model.safetensors")
    (tmp_path / "notes.png").write_text("not an image")
    single = predictor.predict(digit_images[0])
    assert len(single) == 1 and single[0].label is not None
    results = predictor.predict([tmp_path / "notes.png", tmp_path / "missing.png",
                                 digit_images[1]])
    assert results[0].error and results[1].error and results[0].label is None
    assert results[2].label is not None and results[2].error is None


@pytest.mark.slow
def test_models_command_lists_every_model(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--image-size", "28", "--channels", "1"]) == 0
    out = capsys.readouterr().out
    for name in imgcls.list_models():
        assert name in out


@pytest.mark.slow
@pytest.mark.parametrize("name, channels_last", [("vgg11_bn", True), ("lenet5", False)])
def test_predictor_runs_in_the_memory_format_training_uses(name: str, channels_last: bool,
                                                           tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, in_channels=3, image_size=32).eval()
    metadata = {"architecture": {"name": name, "kwargs": {
        "num_classes": 4, "in_channels": 3, "image_size": 32}},
        "class_names": list("abcd"), "input": {"channels": 3, "height": 32, "width": 32},
        "normalization": {"mode": "meanstd", "mean": [0.5] * 3, "std": [0.25] * 3}}
    save_model(tmp_path / "model.safetensors", model, ModelCard.from_header(metadata))
    predictor = imgcls.load(tmp_path / "model.safetensors")
    conv = next(p for p in predictor.model.parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) is channels_last
    pixels = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():  # the reference: a plain contiguous forward pass
        expected = model((pixels.float() / 255 - 0.5) / 0.25).softmax(dim=1)
    assert torch.allclose(predictor.probabilities(pixels), expected, atol=1e-5)
