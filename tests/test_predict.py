"""The Predictor takes paths, PIL images and arrays alike, and survives bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgcls
from imgcls.cli import main
from imgcls.data.sources import load_source


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


def test_models_command_lists_every_model(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--image-size", "28", "--channels", "1"]) == 0
    out = capsys.readouterr().out
    for name in imgcls.list_models():
        assert name in out
