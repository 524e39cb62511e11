"""A phone-sized model in the web app (issue 28, item 4): `imgcls export --format web` ships
mobilenet_v3_small as int8 when its check passes, else fp32 and says why; the int8 app answers
in headless Chromium with onnxruntime-web, and the export prints the app's size and the
model's in-browser latency.

The network is untrained (random weights, 32 px, so the test is quick): a split.json and a
recorded data folder beside it are all the int8 check needs. An untrained network's agreement
says nothing, so the test that needs int8 shipped passes thresholds that any agreement meets
(--min-agreement 0), and the fallback tests thresholds that none can (above 1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from webapp_page import app_page, classify, needs_chromium

from imgcls.cli.serve import main as serve_main
from imgcls.data.sources import load_source
from imgcls.data.split import split_image_set
from imgcls.modelfile.artifact import save_model
from imgcls.modelfile.card import Architecture, DataRecord, InputShape, ModelCard, RuntimeRecord
from imgcls.models import create_model
from imgcls.webapp import build_web_app
from imgcls.webapp.latency import measure_latency
from imgcls.webapp.shipped import cached_fp32

from imagefolder import write_folder

SIZE = 32
ALWAYS_PASSES = ["--min-agreement", "0", "--max-accuracy-drop", "100"]
NEVER_PASSES = ["--min-agreement", "1.01"]


@pytest.fixture(scope="module")
def mobile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained mobilenet_v3_small (3 classes, 3x32x32) saved as a run of a data folder
    the test writes: model.safetensors recording the data, split.json beside it."""
    root = tmp_path_factory.mktemp("phone")
    data = write_folder(root / "data", per_class=12)
    images = load_source(str(data), channels=3, image_size=SIZE)
    split = split_image_set(images, val=0.2, test=0.3, seed=0)
    run = root / "run"
    run.mkdir()
    (run / "split.json").write_text(json.dumps(split.to_json(images)))
    kwargs = {"num_classes": 3, "in_channels": 3, "image_size": SIZE}
    torch.manual_seed(0)
    model = create_model("mobilenet_v3_small", **kwargs).eval()
    card = ModelCard(
        architecture=Architecture("mobilenet_v3_small", kwargs),
        class_names=images.class_names, input=InputShape(3, SIZE, SIZE),
        normalization={"mode": "meanstd", "mean": [0.5] * 3, "std": [0.25] * 3},
        data=DataRecord(images.source, split.content_hash),
        runtime=RuntimeRecord(channels_last=False, precision="fp32"))
    save_model(run / "model.safetensors", model, card)
    return run


def export(run: Path, folder: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgcls", "export", str(run), "--format", "web",
         "--output", str(folder), *flags], capture_output=True, text=True, timeout=300)


def quantized(model: Path) -> bool:
    nodes = onnx.load(str(model)).graph.node
    return any(node.op_type == "DequantizeLinear" for node in nodes)


@pytest.mark.browser
@pytest.mark.slow
@needs_chromium
def test_int8_mobile_model_answers_in_chromium(mobile_run: Path, tmp_path: Path,
                                               browser: object) -> None:
    folder = tmp_path / "app"
    result = export(mobile_run, folder, *ALWAYS_PASSES, "--latency-runs", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("shipping the int8 model: its check passed (top-1 agreement")
    assert "model 1." in lines[1] and "runtime 14.3 MB" in lines[1]  # int8: under 2 MB
    assert lines[2].startswith("latency for one image: ") and "headless Chromium" in lines[2]
    info = json.loads((folder / "model.json").read_text())
    assert info["precision"] == "int8" and quantized(folder / "model.onnx")
    assert (folder / "model.onnx").stat().st_size < 2.5e6

    photo = tmp_path / "photo.png"
    write_folder(tmp_path / "photos", per_class=1)
    next((tmp_path / "photos" / "top").iterdir()).rename(photo)
    with app_page(browser, folder) as (_, page, watch):
        answer = classify(page, photo)
        assert "int8" in page.text_content("#model")  # the page loaded the int8 app
    assert "error" not in answer, answer.get("error")
    assert answer["label"] in info["class_names"]
    # What the browser's int8 kernels computed is what onnxruntime's int8 kernels compute
    # on the same pixels here (7-bit weights: no CPU's int8 sums saturate, quantize.py).
    pixels = np.array(answer["pixels"], dtype=np.float32).reshape(1, 3, SIZE, SIZE)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    expected = session.run(["probabilities"], {"pixels": pixels})[0][0]
    assert np.abs(np.array(answer["probabilities"]) - expected).max() < 1e-3
    assert watch.errors == []


@pytest.mark.slow
def test_failed_int8_check_ships_fp32_and_says_why(mobile_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "app"
    code = serve_main(["export", str(mobile_run), "--format", "web", "--output", str(folder),
                       "--check-samples", "4", "--latency-runs", "0", *NEVER_PASSES])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].startswith(
        "shipping the fp32 model: the int8 check failed: top-1 agreement with fp32 ")
    assert "below --min-agreement 1.01" in out and "parity on 4 random images" in out
    assert json.loads((folder / "model.json").read_text())["precision"] == "fp32"
    assert not quantized(folder / "model.onnx")


@pytest.mark.slow
def test_quantize_int8_refuses_and_none_skips_the_check(
        mobile_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused = tmp_path / "refused"
    code = serve_main(["export", str(mobile_run), "--format", "web", "--output", str(refused),
                       "--latency-runs", "0", "--quantize", "int8", *NEVER_PASSES])
    assert code == 2 and not refused.exists()
    assert "refusing the int8 model: the int8 check failed" in capsys.readouterr().err

    fp32 = tmp_path / "fp32"
    code = serve_main(["export", str(mobile_run), "--format", "web", "--output", str(fp32),
                       "--check-samples", "0", "--latency-runs", "0", "--quantize", "none"])
    assert code == 0
    assert capsys.readouterr().out.startswith("shipping the fp32 model: --quantize none\n")
    assert not quantized(fp32 / "model.onnx")


@pytest.mark.slow
def test_latency_without_a_browser_is_an_estimate_that_says_so(
        mobile_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = build_web_app(mobile_run, tmp_path / "app", onnx=cached_fp32(mobile_run))
    monkeypatch.setenv("IMGCLS_CHROMIUM", str(tmp_path / "no-such-chromium"))
    latency = measure_latency(folder, runs=2)
    assert not latency.in_browser and latency.median_ms > 0
    assert "NOT the browser (the browser run failed: " in latency.describe()
