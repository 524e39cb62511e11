"""Inference backends (predict/backends): every fp32 backend gives eager torch's probabilities
within 1e-4 for every registered network, the ONNX cache is reused and rebuilt, int8 export
checks its accuracy, and --backend reaches predict, eval and serve."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from imgcls.export.cache import cache_for
from imgcls.modelfile.artifact import save_model
from imgcls.modelfile.card import Architecture, InputShape, ModelCard, RuntimeRecord
from imgcls.models import create_model, get_spec, list_models
from imgcls.predict.predictor import Predictor

# exports and traces every registered network: about a minute and a half
pytestmark = pytest.mark.slow

# Every network on 256 images; the wide and deep ones at a quarter of their width, so the
# whole registry fits in about two minutes on one core (256 images instead of 32 cost
# densenet121, resnet50 and alexnet 6 s more together).
_FULL = {"lenet5", "resnet20", "resnet32", "vgg_small"}
_FP32_BACKENDS = ("torch-folded", "torch-jit", "onnx")


def perturb_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters away from their (identity) initial values,
    so folding BatchNorm into a convolution changes weights and is actually tested."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(size, generator=generator) * 0.1)
    return model.eval()


def write_model_file(folder: Path, name: str, *, channels: int = 3, size: int | None = None,
                     width: float | None = None, seed: int = 0) -> Path:
    """An untrained `name` with perturbed BatchNorm, saved as a model file."""
    size = size or max(get_spec(name).min_size, 8)
    kwargs = {"num_classes": 10, "in_channels": channels, "image_size": size,
              **({"width": width} if width else {})}
    torch.manual_seed(seed)
    model = perturb_batchnorm(create_model(name, **kwargs), seed)
    card = ModelCard(
        architecture=Architecture(name, kwargs), class_names=[str(i) for i in range(10)],
        input=InputShape(channels, size, size),
        normalization={"mode": "meanstd", "mean": [0.5] * channels, "std": [0.25] * channels},
        runtime=RuntimeRecord(channels_last=get_spec(name).channels_last, precision="fp32"),
    )
    path = folder / name / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, model, card)
    return path


@pytest.mark.parametrize("name", list_models())
def test_fp32_backends_match_eager_on_every_registered_model(name: str, tmp_path: Path) -> None:
    full = name in _FULL
    path = write_model_file(tmp_path, name, width=None if full else 0.25)
    card = Predictor(path, device="cpu").card
    images = torch.randint(0, 256, (256, *card.input.chw), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    expected = Predictor(path, device="cpu").probabilities(images)
    for backend in _FP32_BACKENDS:
        got = Predictor(path, device="cpu", backend=backend).probabilities(images)
        difference = (got - expected).abs().max().item()
        assert difference < 1e-4, f"{name} {backend}: {difference:.2e}"


def test_onnx_cache_is_reused_and_rebuilt_when_the_model_file_changes(tmp_path: Path) -> None:
    path = write_model_file(tmp_path, "resnet20", size=16)
    Predictor(path, device="cpu", backend="onnx")
    exported = cache_for(path).path("fp32.onnx")
    assert exported.is_file() and exported.parent == path.parent / "model.backends"
    written_at = exported.stat().st_mtime_ns
    Predictor(path, device="cpu", backend="onnx")
    assert exported.stat().st_mtime_ns == written_at  # the second load reused it

    time.sleep(0.01)
    write_model_file(tmp_path, "resnet20", size=16, seed=1)  # retrained: other weights
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    got = Predictor(path, device="cpu", backend="onnx").probabilities(images)
    rebuilt = cache_for(path).path("fp32.onnx")
    assert rebuilt != exported and rebuilt.is_file() and not exported.exists()
    expected = Predictor(path, device="cpu").probabilities(images)
    assert (got - expected).abs().max().item() < 1e-4


def test_cache_goes_to_the_cache_dir_when_beside_the_model_cannot_be_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_model_file(tmp_path, "lenet5", channels=1, size=28)
    monkeypatch.setenv("IMGCLS_CACHE_DIR", str(tmp_path / "cache"))
    # A file where the cache folder would go: unwritable even for root, which a read-only
    # chmod is not (the tests may run as root in a container).
    (path.parent / "model.backends").write_text("")
    cache = cache_for(path)
    assert cache.folder == tmp_path / "cache" / "backends"
    Predictor(path, device="cpu", backend="onnx")
    assert cache.path("fp32.onnx").is_file()


def test_auto_times_the_candidates_once_and_picks_per_batch_size(tmp_path: Path) -> None:
    path = write_model_file(tmp_path, "lenet5", channels=1, size=28)
    predictor = Predictor(path, device="cpu", backend="auto", batch_sizes=(1, 64))
    timings_file = cache_for(path).path("timings.json")
    (machine, timings), = json.loads(timings_file.read_text()).items()
    assert str(torch.get_num_threads()) + " threads" in machine
    assert set(timings) == {"torch", "torch-folded", "torch-jit", "onnx"}  # no int8 export
    chosen = predictor.backend.chosen
    for size, name in chosen.items():
        assert name == min(timings, key=lambda n, s=str(size): timings[n][s])
    written = timings_file.stat().st_mtime_ns
    Predictor(path, device="cpu", backend="auto", batch_sizes=(1, 64))
    assert timings_file.stat().st_mtime_ns == written  # not measured again
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    difference = predictor.probabilities(images) - Predictor(path).probabilities(images)
    assert difference.abs().max().item() < 1e-4


def test_int8_export_prints_agreement_and_refuses_an_impossible_threshold(
        digits_run: Path, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    from imgcls.cli.serve import main as serve_main

    code = serve_main(["export", str(digits_run), "--quantize", "int8",
                       "--max-accuracy-drop", "-1"])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "top-1 agreement with fp32" in captured.out and "refusing" in captured.err
    assert "pre-processing" not in caplog.text  # onnxruntime's advice on every quantization
    with pytest.raises(Exception, match="failed its accuracy check"):
        Predictor(digits_run, backend="onnx-int8")

    assert serve_main(["export", str(digits_run), "--quantize", "int8"]) == 0
    printed = capsys.readouterr().out
    assert "top-1 agreement with fp32" in printed and "accuracy" in printed
    check = json.loads(cache_for(digits_run / "model.safetensors").path("int8.json")
                       .read_text())
    # 7-bit weights: no CPU's int8 kernels saturate, so this holds on AVX2 as on VNNI
    assert check["passed"] and check["top1_agreement"] >= 0.98
    int8 = Predictor(digits_run, backend="onnx-int8")
    images = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    assert int8.probabilities(images).shape == (4, 10)
    assert int8.backend_name == "onnx-int8"


def test_backend_flag_reaches_predict_eval_and_serve(digits_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    from imgcls.cli import main as cli_main
    from imgcls.cli.backend_option import BACKEND_CHOICES
    from imgcls.cli.serve import main as serve_main
    from imgcls.cli.serve import serve_settings
    from imgcls.predict.backends import BACKENDS

    assert BACKEND_CHOICES == BACKENDS
    image = tmp_path / "digit.png"
    from PIL import Image

    Image.new("L", (28, 28), 200).save(image)
    assert cli_main(["predict", str(digits_run), str(image), "--backend", "onnx",
                     "--format", "json"]) == 0
    assert cli_main(["eval", str(digits_run), "--data", "digits", "--backend", "torch-folded",
                     "--no-report", "-o", str(tmp_path / "m.json")]) == 0
    capsys.readouterr()
    assert serve_main(["serve", str(digits_run), "--backend", "fastest"]) == 2
    assert "invalid choice: 'fastest'" in capsys.readouterr().err
    parser_args = _serve_args(digits_run, "onnx")
    assert serve_settings(parser_args).backend == "onnx"


def _serve_args(model: Path, backend: str):
    import argparse

    from imgcls.cli.parsing import Parser, add_verbs
    from imgcls.cli.serve import add_commands

    parser = Parser(prog="imgcls")
    add_commands(add_verbs(parser))
    args = parser.parse_args(["serve", str(model), "--backend", backend])
    assert isinstance(args, argparse.Namespace)
    return args
