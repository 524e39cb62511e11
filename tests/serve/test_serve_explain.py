"""POST /v1/explain: absent (404) unless `imgcls serve --explain`; then Grad-CAM overlays of
one upload as base64 PNGs, a 4xx for a bad upload, and an .onnx model refused at start."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from imgcls.cli import main
from imgcls.cli.parsing import Parser
from imgcls.cli.serve import add_commands as add_serve_commands
from imgcls.cli.serve import serve_settings
from imgcls.data.sources import load_source
from imgcls.errors import UserError
from imgcls.serve import ServeSettings, create_app
from imgcls.serve.explain_route import add_explain_route

EXPLAIN = "/v1/explain"


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(load_source("digits").images[3, 0].numpy()).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(digits_run: Path) -> Iterator[TestClient]:
    with TestClient(create_app(digits_run, ServeSettings(max_batch=4, explain=True))) as served:
        yield served


def test_off_unless_asked(digits_run: Path, digit_png: bytes) -> None:
    with TestClient(create_app(digits_run, ServeSettings(max_batch=4))) as plain:
        answer = plain.post(EXPLAIN, content=digit_png, headers={"Content-Type": "image/png"})
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
        assert EXPLAIN not in plain.get("/openapi.json").json()["paths"]


def test_overlays_for_the_top_classes(client: TestClient, digit_png: bytes) -> None:
    predicted = client.post("/v1/predict?topk=2", files={"file": ("three.png", digit_png)})
    answer = client.post(f"{EXPLAIN}?topk=2", files={"file": ("three.png", digit_png)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["input"] == "three.png" and body["layer"] == "features"
    explanations = body["explanations"]
    top = predicted.json()["predictions"][0]["topk"]
    assert [e["rank"] for e in explanations] == [1, 2]
    assert [e["label"] for e in explanations] == [t["label"] for t in top]
    for explanation, expected in zip(explanations, top, strict=True):
        assert explanation["score"] == pytest.approx(expected["score"], abs=1e-4)
        with Image.open(io.BytesIO(base64.b64decode(explanation["overlay_png"]))) as picture:
            assert picture.format == "PNG" and picture.mode == "RGB"
            assert picture.size == (128, 128)  # the 32 px input, enlarged 4x
    raw = client.post(EXPLAIN, content=digit_png, headers={"Content-Type": "image/png"})
    assert len(raw.json()["explanations"]) == 1  # the default topk


@pytest.mark.parametrize(("request_options", "status", "code"), [
    ({"content": b"", "headers": {"Content-Type": "image/png"}}, 400, "empty_body"),
    ({"content": b"plain text, no image", "headers": {"Content-Type": "image/png"}}, 415,
     "unsupported_image"),
    ({"content": b"\x89PNG\r\n\x1a\n cut short", "headers": {"Content-Type": "image/png"}},
     400, "corrupt_image"),
    ({"content": b"{}", "headers": {"Content-Type": "application/json"}}, 415,
     "unsupported_media_type"),
])
def test_bad_uploads_are_4xx(client: TestClient, request_options: dict, status: int,
                             code: str) -> None:
    answer = client.post(EXPLAIN, **request_options)
    assert answer.status_code == status and answer.json()["error"]["code"] == code


def test_one_image_and_a_bounded_topk(client: TestClient, digit_png: bytes) -> None:
    two = client.post(EXPLAIN, files=[("file", ("a.png", digit_png)),
                                      ("file", ("b.png", digit_png))])
    assert two.status_code == 413 and "one image per request" in two.json()["error"]["message"]
    for topk in ("0", "11", "many"):
        answer = client.post(f"{EXPLAIN}?topk={topk}", content=digit_png,
                             headers={"Content-Type": "image/png"})
        assert answer.status_code == 400, topk
        assert answer.json()["error"]["code"] == "invalid_request"


def test_a_slow_explanation_is_504_in_time(digits_run: Path, digit_png: bytes,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(*_args: object) -> list:
        time.sleep(1.0)
        return []

    monkeypatch.setattr("imgcls.serve.explain_route._explain", slow)
    settings = ServeSettings(max_batch=1, explain=True, timeout_s=0.3)
    with TestClient(create_app(digits_run, settings)) as impatient:
        started = time.perf_counter()
        answer = impatient.post(EXPLAIN, content=digit_png, headers={"Content-Type": "image/png"})
        assert answer.status_code == 504 and answer.json()["error"]["code"] == "timeout"
        assert time.perf_counter() - started < 0.9  # not after the pass it gave up on


def test_the_flag_and_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = Parser(prog="imgcls")
    add_serve_commands(parser.add_subparsers(dest="verb"))
    assert serve_settings(parser.parse_args(["serve", "m"])).explain is False
    assert serve_settings(parser.parse_args(["serve", "m", "--explain"])).explain is True
    monkeypatch.setenv("IMGCLS_EXPLAIN", "1")
    parser = Parser(prog="imgcls")
    add_serve_commands(parser.add_subparsers(dest="verb"))
    assert serve_settings(parser.parse_args(["serve", "m"])).explain is True


def test_an_onnx_model_is_refused(tmp_path: Path) -> None:
    from fastapi import FastAPI

    with pytest.raises(UserError, match="ONNX export"):
        add_explain_route(FastAPI(), tmp_path / "model.onnx", ServeSettings(explain=True))


@pytest.mark.slow
def test_serve_onnx_with_explain_is_one_line(digits_run: Path, tmp_path: Path, started: list,
                                             capsys: pytest.CaptureFixture) -> None:
    from imgcls.export.writers import export_model

    exported = export_model(digits_run, "onnx", tmp_path / "digits.onnx")
    assert main(["serve", str(exported), "--explain"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imgcls: error:") and "ONNX export" in err and err.count("\n") == 1
    assert started == []  # refused before any server started
