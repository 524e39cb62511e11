"""An .onnx file runs under onnxruntime only: asking for any backend that needs the
model.safetensors (a torch variant or the int8 export) is refused in one line naming the
flag and the file, by `imgcls predict` and by `imgcls serve` alike (one Predictor, opened by
predict.predictor.open_predictor for both); the backends an .onnx file can honour open it."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgcls.errors import UserError
from imgcls.export.writers import export_model
from imgcls.predict.backends.choose import BACKENDS
from imgcls.predict.predictor import ONNX_FILE_BACKENDS, Predictor, open_predictor
from imgcls.serve.app import create_app
from imgcls.serve.settings import ServeSettings

OLD_MODEL = Path(__file__).parent / "files" / "v480dbf0" / "model.safetensors"
# The ONNX export takes a few seconds with its imports: kept out of `make test-fast`.
pytestmark = pytest.mark.slow
NEEDS_SAFETENSORS = sorted(set(BACKENDS) - set(ONNX_FILE_BACKENDS))


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model(OLD_MODEL, "onnx", tmp_path_factory.mktemp("export") / "m.onnx")


def test_the_refused_backends_are_the_torch_and_int8_ones() -> None:
    assert {"torch-folded", "torch-jit", "onnx-int8"} <= set(NEEDS_SAFETENSORS)


@pytest.mark.parametrize("backend", NEEDS_SAFETENSORS)
def test_predict_refuses_a_backend_an_onnx_file_cannot_run(onnx_file: Path,
                                                           backend: str) -> None:
    with pytest.raises(UserError, match=rf"--backend {backend} needs a model.safetensors; "
                                        rf".*m\.onnx is an ONNX file"):
        open_predictor(onnx_file, backend=backend)


@pytest.mark.parametrize("backend", NEEDS_SAFETENSORS)
def test_serve_refuses_it_the_same_way(onnx_file: Path, backend: str) -> None:
    with pytest.raises(UserError, match=rf"--backend {backend} needs a model.safetensors"):
        create_app(onnx_file, ServeSettings(backend=backend))


@pytest.mark.parametrize("backend", ONNX_FILE_BACKENDS)
def test_the_backends_an_onnx_file_honours_open_it(onnx_file: Path, backend: str) -> None:
    predictor = Predictor(onnx_file, backend=backend)
    assert predictor.backend_name == "onnxruntime" and predictor.card.model_name == "lenet5"
