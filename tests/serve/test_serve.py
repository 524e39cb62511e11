"""The service under a real uvicorn on 127.0.0.1: answers match `imgcls predict`, the
official tritonclient works against /v2, the API key, metrics, CORS and env settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.cli import main
from imgcls.cli.parsing import Parser
from imgcls.cli.serve import add_commands as add_serve_commands
from imgcls.cli.serve import serve_settings
from imgcls.data.sources import load_source
from imgcls.serve import ServeSettings, create_app
from imgcls.serve.live import running

MODEL_NAME = "digits-lenet5"


@pytest.fixture(scope="module")
def server(digits_run: Path) -> Iterator[str]:
    with running(create_app(digits_run, ServeSettings())) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("digit-files")
    paths = []
    for index, pixels in enumerate(load_source("digits").images[:5, 0].numpy()):
        paths.append(folder / f"digit{index}.png")
        Image.fromarray(pixels).resize((24, 24)).save(paths[-1])  # resized by the service
    return paths


def test_predict_matches_the_cli(server: str, digits_run: Path, digit_files: list[Path],
                                 capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(digits_run), *map(str, digit_files), "--format", "json",
                 "--topk", "3"]) == 0
    expected = json.loads(capsys.readouterr().out)
    files = [("file", (path.name, path.read_bytes(), "image/png")) for path in digit_files]
    answer = httpx.post(f"{server}/v1/predict?topk=3", files=files, timeout=30).json()
    assert answer["model"] == MODEL_NAME and answer["latency_ms"] > 0
    assert len(answer["predictions"]) == len(expected)
    for got, want in zip(answer["predictions"], expected, strict=True):
        assert got["label"] == want["label"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
        assert [t["label"] for t in got["topk"]] == [t["label"] for t in want["topk"]]
    raw = httpx.post(f"{server}/v1/predict", content=digit_files[0].read_bytes(),
                     headers={"Content-Type": "image/png"}, timeout=30).json()
    assert raw["predictions"][0]["label"] == expected[0]["label"]
    assert len(raw["predictions"][0]["topk"]) == 5  # the default topk


def test_metadata_health_and_docs(server: str) -> None:
    info = httpx.get(f"{server}/v1/model").json()
    assert info["name"] == MODEL_NAME and len(info["class_names"]) == 10
    assert info["input"] == {"channels": 1, "height": 32, "width": 32}
    assert "normalization" in info and "versions" in info
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready",
                 f"/v2/models/{MODEL_NAME}/ready", "/docs", "/openapi.json", "/"):
        assert httpx.get(server + path).status_code == 200, path
    metadata = httpx.get(f"{server}/v2/models/{MODEL_NAME}").json()
    assert metadata["outputs"][0] == {"name": "probabilities", "datatype": "FP32",
                                      "shape": [-1, 10]}


def test_tritonclient_bytes_and_fp32(server: str, digits_run: Path,
                                     digit_files: list[Path]) -> None:
    import tritonclient.http as triton

    from imgcls.predict.predictor import Predictor

    predictor = Predictor(digits_run, device="cpu")
    expected = [p.label for p in predictor.predict(digit_files)]
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    assert client.is_server_live() and client.is_model_ready(MODEL_NAME)
    encoded = triton.InferInput("images", [len(digit_files)], "BYTES")
    encoded.set_data_from_numpy(np.array([p.read_bytes() for p in digit_files], dtype=object))
    result = client.infer(MODEL_NAME, [encoded])
    assert [label.decode() for label in result.as_numpy("labels")] == expected
    assert result.as_numpy("probabilities").shape == (len(digit_files), 10)

    pixels = np.stack([predictor.to_uint8(p).numpy() for p in digit_files]).astype(np.float32)
    for binary in (True, False):
        tensor = triton.InferInput("pixels", list(pixels.shape), "FP32")
        tensor.set_data_from_numpy(pixels, binary_data=binary)
        outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary),
                   triton.InferRequestedOutput("labels", binary_data=binary)]
        result = client.infer(MODEL_NAME, [tensor], outputs=outputs)
        want = predictor.probabilities(torch.from_numpy(pixels)).numpy()
        np.testing.assert_allclose(result.as_numpy("probabilities"), want, atol=1e-5)
        labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("labels")]
        assert labels == expected


def test_api_key(digits_run: Path, digit_files: list[Path]) -> None:
    with running(create_app(digits_run, ServeSettings(api_key="s3cret"))) as base_url:
        body = digit_files[0].read_bytes()
        headers = {"Content-Type": "image/png"}
        missing = httpx.post(f"{base_url}/v1/predict", content=body, headers=headers)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        wrong = httpx.get(f"{base_url}/v1/model", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        good = httpx.post(f"{base_url}/v1/predict", content=body,
                          headers={**headers, "Authorization": "Bearer s3cret"})
        assert good.status_code == 200
        for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
            assert httpx.get(base_url + path).status_code == 200, path
        for path in ("/metrics", "/docs", f"/v2/models/{MODEL_NAME}"):
            assert httpx.get(base_url + path).status_code == 401, path


def test_metrics_after_requests(server: str, digit_files: list[Path]) -> None:
    httpx.post(f"{server}/v1/predict", content=digit_files[0].read_bytes(),
               headers={"Content-Type": "image/png"})
    text = httpx.get(f"{server}/metrics").text
    assert 'imgcls_requests_total{method="POST",route="/v1/predict",status="200"}' in text
    assert "imgcls_request_duration_seconds_bucket" in text
    assert "imgcls_batch_size_count" in text and "imgcls_queue_depth 0" in text


def test_cors_off_by_default_and_on_when_asked(server: str, digits_run: Path) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in httpx.options(
        f"{server}/v1/predict", headers=preflight).headers
    settings = ServeSettings(cors_origins=("https://app.example",), api_key="k")
    with running(create_app(digits_run, settings)) as base_url:
        answer = httpx.options(f"{base_url}/v1/predict", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://app.example"


def test_flags_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLS_MAX_BATCH", "7")
    monkeypatch.setenv("IMGCLS_API_KEY", "from-env")
    monkeypatch.setenv("IMGCLS_MODEL", "some/model.safetensors")
    monkeypatch.setenv("IMGCLS_CORS_ORIGIN", "https://a.example, https://b.example")
    args = serve_parser().parse_args(["serve", "--port", "9000"])
    settings = serve_settings(args)
    assert args.model == "some/model.safetensors"
    assert (settings.max_batch, settings.api_key, settings.port) == (7, "from-env", 9000)
    assert settings.host == "127.0.0.1"  # loopback by default
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    monkeypatch.setenv("IMGCLS_MAX_BATCH", "many")
    with pytest.raises(SystemExit):  # defaults are read when the parser is built
        serve_parser().parse_args(["serve"])


def serve_parser() -> Parser:
    parser = Parser(prog="imgcls")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    add_serve_commands(verbs)
    return parser

