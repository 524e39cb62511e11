"""Cold start: `--help` imports neither torch nor torchvision, and an exported .onnx model
predicts and serves without importing torch, with the torch Predictor's answers.

Each check runs in a fresh interpreter: this one has torch loaded already (conftest)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcls.cli import build_parser
from imgcls.export.writers import export_model
from imgcls.predict.predictor import Predictor

# every check runs in a fresh Python process
pytestmark = pytest.mark.multiprocess


def fresh_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, check=False)


def verbs() -> list[list[str]]:
    """[], then every verb and `data`'s sub-verbs, as the argv before `--help`."""
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # argparse has no public accessor
    found: list[list[str]] = [[]]
    for verb, command in choices.items():
        found.append([verb])
        if command._subparsers is not None:
            found += [[verb, sub] for sub in command._subparsers._group_actions[0].choices]
    return found


HELP = """
import sys
from imgcls.cli import main
code = main(sys.argv[1:] + ["--help"])
print(code, [name for name in ("torch", "torchvision") if name in sys.modules])
"""


@pytest.mark.parametrize("argv", verbs(), ids=lambda argv: " ".join(argv) or "imgcls")
def test_help_imports_neither_torch_nor_torchvision(argv: list[str]) -> None:
    result = fresh_python(HELP, *argv)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stdout[-300:]


@pytest.fixture(scope="module")
def onnx_file(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model(digits_run, "onnx", tmp_path_factory.mktemp("cold") / "digits.onnx")


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("digits-png")
    paths = []
    for index, image in enumerate(load_digits().images[:8]):
        path = folder / f"digit{index}.png"
        Image.fromarray((image * 255 / 16).astype(np.uint8)).resize((28, 28)).save(path)
        paths.append(path)
    return paths


PREDICT = """
import sys
from imgcls.cli import main
code = main(["predict", *sys.argv[1:], "--format", "json", "--topk", "10"])
print("TORCH" if "torch" in sys.modules else "NO-TORCH", file=sys.stderr)
sys.exit(code)
"""


def test_onnx_predict_imports_no_torch_and_answers_like_torch(
        onnx_file: Path, digits_run: Path, digit_pngs: list[Path]) -> None:
    result = fresh_python(PREDICT, str(onnx_file), *map(str, digit_pngs))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "NO-TORCH"
    from_onnx = json.loads(result.stdout)
    from_torch = Predictor(digits_run, device="cpu").predict(digit_pngs, topk=10)
    assert len(from_onnx) == len(from_torch) == len(digit_pngs)
    for onnx_answer, torch_answer in zip(from_onnx, from_torch, strict=True):
        assert onnx_answer["input"] == torch_answer.input
        assert onnx_answer["label"] == torch_answer.label
        onnx_scores = {row["label"]: row["score"] for row in onnx_answer["topk"]}
        torch_scores = {row["label"]: row["score"] for row in torch_answer.topk}
        assert onnx_scores.keys() == torch_scores.keys()  # all 10 classes
        for label, score in torch_scores.items():
            assert onnx_scores[label] == pytest.approx(score, abs=1e-4)


def same_answers(from_json: list[dict], from_torch: list) -> None:
    assert len(from_json) == len(from_torch) > 0
    for json_answer, torch_answer in zip(from_json, from_torch, strict=True):
        assert json_answer["label"] == torch_answer.label
        scores = {row["label"]: row["score"] for row in json_answer["topk"]}
        for row in torch_answer.topk:
            assert scores[row["label"]] == pytest.approx(row["score"], abs=1e-4)


@pytest.mark.parametrize("backend", ["auto", "onnx"])
def test_a_model_file_with_a_cached_export_predicts_without_torch(
        digits_run: Path, digit_pngs: list[Path], tmp_path: Path, backend: str) -> None:
    model = tmp_path / "model.safetensors"  # a copy: its own cache beside it
    shutil.copyfile(digits_run / "model.safetensors", model)
    images = [str(path) for path in digit_pngs[:1]]  # batch 1, what a one-image predict times
    first = fresh_python(PREDICT, str(model), *images, "--backend", backend)
    assert first.returncode == 0, first.stderr
    assert first.stderr.strip().splitlines()[-1] == "TORCH"  # builds the cache
    again = fresh_python(PREDICT, str(model), *images, "--backend", backend)
    assert again.returncode == 0, again.stderr
    expected = "NO-TORCH" if backend == "onnx" or _auto_chose_onnx(model) else "TORCH"
    assert again.stderr.strip().splitlines()[-1] == expected
    same_answers(json.loads(again.stdout), Predictor(model, device="cpu").predict(images, topk=10))


def _auto_chose_onnx(model: Path) -> bool:
    """Whether the timings auto stored rank onnx first at batch 1 (lenet5: every time so far,
    0.08 ms against 0.26-0.45 for the torch backends; the test follows what was measured)."""
    timings = json.loads(next(model.parent.glob("model.backends/*.timings.json")).read_text())
    (ranking,) = timings.values()
    return min(ranking, key=lambda name: ranking[name].get("1", float("inf"))) == "onnx"


def test_onnx_pixels_are_the_predictors(onnx_file: Path, digits_run: Path,
                                        digit_pngs: list[Path]) -> None:
    """An .onnx file's torch-free decoding gives the model file's pixels (PNGs: byte for byte)."""
    torch_side, onnx_side = Predictor(digits_run, device="cpu"), Predictor(onnx_file)
    assert onnx_side.undrafted_jpeg is None and onnx_side.runtime is None
    for path in digit_pngs:
        assert np.array_equal(onnx_side.pixels(path), torch_side.to_uint8(path).numpy())


SERVE = """
import json, sys
from fastapi.testclient import TestClient
from imgcls.serve import ServeSettings, create_app

app = create_app(sys.argv[1], ServeSettings(max_batch=4, backend=sys.argv[3]))
after_creation = "torch" in sys.modules
with TestClient(app) as client:
    with open(sys.argv[2], "rb") as image:
        answer = client.post("/v1/predict", content=image.read(),
                             headers={"Content-Type": "image/png"})
    info = client.get("/v1/model").json()
print(json.dumps({"after_creation": after_creation, "after_request": "torch" in sys.modules,
                  "status": answer.status_code, "answer": answer.json(),
                  "backend": info["backend"]}))
"""


def served_without_torch(model: Path, backend: str, image: Path, reference: Path) -> None:
    """`model` served under `backend` in a fresh process never imports torch, and answers
    `image` as the torch Predictor of `reference` does."""
    result = fresh_python(SERVE, str(model), str(image), backend)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 200, report
    assert report["after_creation"] is False and report["after_request"] is False
    assert report["backend"] == "onnxruntime"
    expected = Predictor(reference, device="cpu").predict(image)[0]
    answer = report["answer"]["predictions"][0]
    assert answer["label"] == expected.label
    assert answer["score"] == pytest.approx(expected.score, abs=1e-4)


def test_onnx_service_imports_no_torch(onnx_file: Path, digits_run: Path,
                                       digit_pngs: list[Path]) -> None:
    served_without_torch(onnx_file, "torch", digit_pngs[0], digits_run)


def test_a_model_file_with_a_cached_export_serves_without_torch(
        digits_run: Path, digit_pngs: list[Path], tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"  # a copy: its own cache beside it
    shutil.copyfile(digits_run / "model.safetensors", model)
    Predictor(model, device="cpu", backend="onnx")  # builds the cached export
    served_without_torch(model, "onnx", digit_pngs[0], model)


def test_a_fresh_run_predicts_without_torch_by_default(
        tmp_path: Path, digit_pngs: list[Path]) -> None:
    """Training caches its ONNX export (predict/backends/prepare.py), so the first plain `imgcls
    predict RUN one.png` (--backend auto, nothing timed yet) answers from onnxruntime."""
    import imgcls

    run = imgcls.train(data="digits", model="lenet5", epochs=1, batch_size=64,
                       precision="fp32", output=str(tmp_path / "run"), show_progress=False)
    assert list((run / "model.backends").glob("*.fp32.onnx"))
    result = fresh_python(PREDICT, str(run), str(digit_pngs[0]))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "NO-TORCH"
    same_answers(json.loads(result.stdout),
                 Predictor(run, device="cpu").predict([str(digit_pngs[0])], topk=10))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_cached_export_falls_back_to_torch(
        digits_run: Path, digit_pngs: list[Path], tmp_path: Path, damage: str) -> None:
    """A cached export that onnxruntime cannot load is named in a warning; predict and serve
    answer through torch and auto never picks it; `--backend onnx` refuses, naming it."""
    from imgcls.predict.predictor import open_predictor

    model = tmp_path / "model.safetensors"
    shutil.copyfile(digits_run / "model.safetensors", model)
    Predictor(model, device="cpu", backend="onnx")  # builds the cached export
    (export,) = model.parent.glob("model.backends/*.fp32.onnx")
    whole = export.read_bytes()
    export.write_bytes(b"not an onnx file" if damage == "garbage" else whole[:len(whole) // 2])
    result = fresh_python(PREDICT, str(model), str(digit_pngs[0]))
    assert result.returncode == 0, result.stderr
    assert "imgcls: warning:" in result.stderr and export.name in result.stderr
    same_answers(json.loads(result.stdout),
                 Predictor(model, device="cpu").predict([str(digit_pngs[0])], topk=10))
    served = open_predictor(model, backend="auto", batch_sizes=(1, 4))  # as `imgcls serve`
    assert served.backend_name == "auto"  # the torch Predictor's auto, without onnx
    assert served.backend.choice(1) != "onnx"
    from imgcls.errors import UserError

    with pytest.raises(UserError, match=export.name):  # asked for by name: a clear refusal
        open_predictor(model, backend="onnx", batch_sizes=(1, 4))
