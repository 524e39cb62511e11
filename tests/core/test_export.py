"""ONNX and TorchScript exports: dynamic batch, embedded metadata, parity with torch, and
the .onnx file served and predicted through onnxruntime."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
import torch

from imgcls.cli.serve import main as serve_main
from imgcls.data.builtin import load_builtin
from imgcls.export.writers import export_model, parity_images
from imgcls.modelfile.artifact import load_model, read_card, save_model
from imgcls.predict.parity import check_parity
from imgcls.predict.predictor import Predictor
from imgcls.serve import ServeSettings, create_app
from imgcls.serve.live import running


@pytest.fixture(scope="module")
def onnx_file(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model(digits_run, "onnx", tmp_path_factory.mktemp("export") / "m.onnx")


@pytest.mark.slow
def test_onnx_has_metadata_and_a_dynamic_batch(onnx_file: Path, digits_run: Path) -> None:
    model = onnx.load(str(onnx_file))
    properties = {entry.key: entry.value for entry in model.metadata_props}
    card = read_card(digits_run)
    embedded = json.loads(properties["imgcls"])
    assert embedded["class_names"] == card.class_names
    assert json.loads(properties["normalization"]) == card.normalization
    assert json.loads(properties["input"]) == {"channels": 1, "height": 32, "width": 32}
    assert embedded["export"]["normalization_in_graph"] is True
    batch_axis = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param and not batch_axis.dim_value  # symbolic, not fixed
    assert model.opset_import[0].version >= 18


@pytest.mark.slow
def test_onnx_parity_on_256_fashion_mnist_test_images(onnx_file: Path,
                                                      digits_run: Path) -> None:
    images, source = parity_images(read_card(digits_run), 256, "fashion-mnist")
    parity = check_parity(digits_run, onnx_file, images, source)
    print(parity.describe())
    assert parity.samples == 256 and source == "fashion-mnist test images"
    assert parity.top1_agreement == 1.0 and parity.max_abs_difference < 1e-4


@pytest.mark.slow
def test_predictor_runs_onnx_like_torch(onnx_file: Path, digits_run: Path) -> None:
    pixels = [np.random.default_rng(i).integers(0, 256, (20, 28), dtype=np.uint8)
              for i in range(5)]
    from_onnx = Predictor(onnx_file).predict(pixels)
    from_torch = Predictor(digits_run, device="cpu").predict(pixels)
    for a, b in zip(from_onnx, from_torch, strict=True):
        assert a.label == b.label and a.score == pytest.approx(b.score, abs=1e-5)


@pytest.mark.slow
def test_serve_an_onnx_file(onnx_file: Path, digits_run: Path) -> None:
    images = torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8)
    with running(create_app(onnx_file, ServeSettings())) as base_url:
        info = httpx.get(f"{base_url}/v1/model").json()
        assert info["backend"] == "onnxruntime" and info["name"] == "m"
        body = {"inputs": [{"name": "pixels", "shape": [3, 1, 32, 32], "datatype": "UINT8",
                            "data": images.flatten().tolist()}]}
        answer = httpx.post(f"{base_url}/v2/models/m/infer", json=body, timeout=30).json()
    probabilities = np.array(answer["outputs"][0]["data"], dtype=np.float32)
    expected = Predictor(digits_run, device="cpu").probabilities(images).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def _flip_averaging_copy(run_dir: Path, target: Path) -> Path:
    """The run's model file with --tta hflip in its card: the same weights, averaged."""
    model, card = load_model(run_dir)
    kwargs = {**card.architecture.kwargs, "tta": "hflip"}
    card = dataclasses.replace(card, architecture=dataclasses.replace(card.architecture,
                                                                      kwargs=kwargs))
    save_model(target, model, card)
    return target


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "torch-jit", "torch-folded"])
def test_every_backend_and_the_onnx_file_run_the_flip_average(
    digits_run: Path, tmp_path: Path, backend: str
) -> None:
    averaged = _flip_averaging_copy(digits_run, tmp_path / "averaged.safetensors")
    # Digits: a mirror image of a digit is another picture to this model.
    images = load_builtin("digits", channels=1, size=32, data_dir=None).images[:6]
    plain = Predictor(digits_run, device="cpu").probabilities(images)
    mirrored = Predictor(digits_run, device="cpu").probabilities(images.flip(-1))
    expected = Predictor(averaged, device="cpu").probabilities(images)
    model, _ = load_model(averaged)
    assert type(model).__name__.endswith("FlipAverage")
    # Log-probabilities are the logits less a constant per image, which softmax ignores.
    averaged_logits = (plain.log() + mirrored.log()) / 2
    torch.testing.assert_close(expected, averaged_logits.softmax(dim=1), atol=2e-3, rtol=0)
    assert (expected - plain).abs().max() > 0.05
    through = Predictor(averaged, device="cpu", backend=backend).probabilities(images)
    torch.testing.assert_close(through, expected, atol=1e-4, rtol=0)
    exported = export_model(averaged, "onnx", tmp_path / "averaged.onnx")
    torch.testing.assert_close(Predictor(exported).probabilities(images), expected,
                               atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_export_command_prints_parity(digits_run: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "model.torchscript.pt"
    code = serve_main(["export", str(digits_run), "--format", "torchscript", "-o", str(output),
                       "--check-samples", "32"])
    printed = capsys.readouterr().out
    assert code == 0 and output.is_file()
    assert "parity on 32 digits images" in printed and "top-1 agreement 32/32" in printed
    extra = {"imgcls.json": ""}
    scripted = torch.jit.load(str(output), _extra_files=extra)
    assert json.loads(extra["imgcls.json"])["class_names"] == read_card(digits_run).class_names
    assert scripted(torch.zeros(7, 1, 32, 32)).shape == (7, 10)  # any batch size


def test_export_mistakes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert serve_main(["export", str(tmp_path / "missing.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert serve_main(["serve", str(tmp_path / "missing.onnx")]) == 2
