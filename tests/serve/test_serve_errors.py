"""Bad requests get their 4xx (or 503/504), as JSON, and the server keeps answering."""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imgcls.serve import ServeSettings, create_app
from imgcls.serve.live import running

MODEL = "digits-lenet5"
PREDICT, INFER = "/v1/predict", f"/v2/models/{MODEL}/infer"


def png_bytes(size: tuple[int, int] = (40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 60).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_header_only() -> bytes:
    """A JPEG cut right after its start-of-scan header: every header, no pixels."""
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buffer, "JPEG")
    data = buffer.getvalue()
    start_of_scan = data.index(b"\xff\xda")
    length = struct.unpack(">H", data[start_of_scan + 2:start_of_scan + 4])[0]
    return data[:start_of_scan + 2 + length]


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header for a width x height gray image, with almost no pixel data: what
    a decompression bomb (or a 0x0 image) looks like before decoding."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def ico_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "ICO")  # PIL reads it; the service does not
    return buffer.getvalue()


def raw(data: bytes, content_type: str | None = "image/png") -> dict[str, Any]:
    return {"content": data, "headers": {"Content-Type": content_type} if content_type else {}}


def tensor(shape: list[int], datatype: str = "FP32", data: Any = None) -> dict[str, Any]:
    count = 1
    for side in shape:
        count *= side
    values = data if data is not None else [0.0] * count
    return {"json": {"inputs": [{"name": "pixels", "shape": shape, "datatype": datatype,
                                 "data": values}]}}


# (case, method, path, request kwargs, expected status, expected error code)
BAD_REQUESTS = [
    ("upload over --max-upload-mb", "post", PREDICT,
     raw(b"\x89PNG\r\n\x1a\n" + b"\x00" * (1_200_000)), 413, "payload_too_large"),
    ("not an image", "post", PREDICT, raw(b"hello, I am text"), 415, "unsupported_image"),
    ("unsupported format (ICO)", "post", PREDICT, raw(ico_bytes(), "image/x-icon"), 415,
     "unsupported_image"),
    ("truncated PNG", "post", PREDICT, raw(png_bytes()[:300]), 400, "corrupt_image"),
    ("header-only JPEG", "post", PREDICT, raw(jpeg_header_only(), "image/jpeg"), 400,
     "corrupt_image"),
    ("PNG header only, 40 bytes", "post", PREDICT, raw(png_bytes()[:40]), 400,
     "corrupt_image"),
    ("0x0 image", "post", PREDICT, raw(png_claiming(0, 0)), 400, "corrupt_image"),
    ("20000x20000 PNG (decompression bomb)", "post", PREDICT,
     raw(png_claiming(20000, 20000)), 413, "image_too_large"),
    ("empty body", "post", PREDICT, raw(b""), 400, "empty_body"),
    ("empty file part", "post", PREDICT, {"files": {"file": ("a.png", b"", "image/png")}},
     400, "empty_image"),
    ("wrong content type (JSON)", "post", PREDICT, {"json": {"image": "x"}}, 415,
     "unsupported_media_type"),
    ("no content type", "post", PREDICT, raw(png_bytes(), None), 415,
     "unsupported_media_type"),
    ("multipart without a file (missing field)", "post", PREDICT,
     {"data": {"note": "hi"}, "files": {"other": ("", b"", "text/plain")}}, 400, None),
    ("multipart, no boundary", "post", PREDICT, raw(b"--x\r\n\r\n", "multipart/form-data"),
     400, "invalid_multipart"),
    ("topk=0", "post", PREDICT + "?topk=0", raw(png_bytes()), 400, "invalid_request"),
    ("topk not a number", "post", PREDICT + "?topk=all", raw(png_bytes()), 400,
     "invalid_request"),
    ("unknown route", "get", "/v1/nothing", {}, 404, "not_found"),
    ("wrong method", "get", PREDICT, {}, 405, "method_not_allowed"),
    ("v2: wrong tensor shape", "post", INFER, tensor([1, 3, 32, 32]), 400, "invalid_tensor"),
    ("v2: wrong dtype (INT64)", "post", INFER, tensor([1, 1, 32, 32], "INT64"), 400,
     "invalid_tensor"),
    ("v2: too few values", "post", INFER, tensor([2, 1, 32, 32], data=[1.0] * 10), 400,
     "invalid_tensor"),
    ("v2: values not numbers", "post", INFER, tensor([1, 1, 1, 2], data=["a", "b"]), 400,
     "invalid_tensor"),
    ("v2: not JSON", "post", INFER, raw(b"{nope", "application/json"), 400,
     "invalid_tensor"),
    ("v2: no inputs", "post", INFER, {"json": {"outputs": []}}, 400, "invalid_tensor"),
    ("v2: BYTES not base64", "post", INFER, tensor([1], "BYTES", ["%%%"]), 400,
     "invalid_tensor"),
    ("v2: BYTES not an image", "post", INFER, tensor([1], "BYTES", ["aGVsbG8="]), 415,
     "unsupported_image"),
    ("v2: unknown model", "post", "/v2/models/other/infer", tensor([1, 1, 32, 32]), 404,
     "model_not_found"),
]


@pytest.fixture(scope="module")
def server(digits_run: Path) -> Iterator[str]:
    settings = ServeSettings(max_upload_mb=1.0)
    with running(create_app(digits_run, settings)) as base_url:
        yield base_url


def test_every_bad_request_gets_its_status(server: str) -> None:
    results = []
    with httpx.Client(base_url=server, timeout=30) as client:
        for case, method, path, kwargs, status, code in BAD_REQUESTS:
            answer = client.request(method.upper(), path, **kwargs)
            body = answer.json()
            error = body["error"]
            got_code = error["code"] if isinstance(error, dict) else body["code"]
            results.append((case, answer.status_code, got_code))
            assert answer.status_code == status, (case, answer.text)
            assert code is None or got_code == code, (case, answer.text)
            assert client.get("/healthz").status_code == 200, case
        assert client.post(PREDICT, **raw(png_bytes())).status_code == 200  # still serving
    for case, status, code in results:
        print(f"{status}  {code:<24} {case}")


def test_v2_errors_use_the_protocol_shape(server: str) -> None:
    answer = httpx.post(server + INFER, **tensor([1, 3, 32, 32])).json()
    assert isinstance(answer["error"], str) and answer["code"] == "invalid_tensor"


@pytest.mark.slow
def test_full_queue_answers_503_with_retry_after(digits_run: Path) -> None:
    # A batch waits up to 1 s to fill; its first image holds 1 of the 2 queue places.
    settings = ServeSettings(max_queue=2, max_wait_ms=1000, max_batch=64)
    with running(create_app(digits_run, settings)) as base_url:
        first = threading.Thread(target=httpx.post, args=(base_url + PREDICT,),
                                 kwargs={**raw(png_bytes()), "timeout": 30})
        first.start()
        _wait_for_queue(base_url, depth=1)
        files = [("file", (f"{i}.png", png_bytes(), "image/png")) for i in range(2)]
        answer = httpx.post(base_url + PREDICT, files=files, timeout=30)
        first.join()
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        assert answer.json()["error"]["code"] == "overloaded"
        statuses = asyncio.run(_flood(base_url, requests=48))
        assert set(statuses) <= {200, 503} and 503 in statuses
        assert httpx.post(base_url + PREDICT, **raw(png_bytes()), timeout=30).status_code == 200


def test_slow_answer_is_504(digits_run: Path) -> None:
    settings = ServeSettings(timeout_s=0.2, max_wait_ms=2000, max_batch=64)
    with running(create_app(digits_run, settings)) as base_url:
        answer = httpx.post(base_url + PREDICT, **raw(png_bytes()), timeout=30)
        assert answer.status_code == 504 and answer.json()["error"]["code"] == "timeout"
        assert httpx.get(base_url + "/healthz").status_code == 200


def _wait_for_queue(base_url: str, depth: int) -> None:
    for _ in range(200):  # bounded: 200 x 10 ms
        if f"imgcls_queue_depth {depth}" in httpx.get(base_url + "/metrics").text:
            return
        threading.Event().wait(0.01)
    raise AssertionError("the first request never reached the queue")


async def _flood(base_url: str, requests: int) -> list[int]:
    body = png_bytes()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        answers = await asyncio.gather(*(
            client.post(PREDICT, content=body, headers={"Content-Type": "image/png"})
            for _ in range(requests)))
    return [answer.status_code for answer in answers]
