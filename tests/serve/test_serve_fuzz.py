"""A seeded fuzz of malformed requests (v1 multipart and raw bodies, v2 JSON, v2 binary)
against a live server: none may get a 5xx, and the server answers /healthz and a good
request afterwards. The counts per status code are printed (pytest -s)."""

from __future__ import annotations

import base64
import copy
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_serve_errors import png_bytes

from imgcls.serve import ServeSettings, create_app
from imgcls.serve.live import running

MODEL = "digits-lenet5"
PREDICT, INFER = "/v1/predict", f"/v2/models/{MODEL}/infer"
PER_KIND = 70  # requests per generator below: 280 in all
SEED = 20240611
PNG = png_bytes((24, 24))
Request = tuple[str, dict[str, Any]]  # (path, httpx keyword arguments)
DEEP = "\u0000deep\u0000"


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One random damage: cut, flip, insert, delete or repeat a stretch of bytes."""
    if not data:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    at = rng.randrange(len(data))
    kind = rng.randrange(5)
    if kind == 0:
        return data[:at]
    if kind == 1:
        flipped = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        return bytes(flipped)
    if kind == 2:
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 32)))
        return data[:at] + noise + data[at:]
    if kind == 3:
        return data[:at] + data[at + rng.randrange(1, 64):]
    return data[:at] + data[at:at + 16] * rng.randrange(2, 50) + data[at:]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "float", "str", "bool", "null", "huge", "list", "dict", "deep"]
    kind = rng.choice(kinds if depth < 3 else kinds[:6])
    if kind == "int":
        return rng.choice([0, 1, -1, 3, 32, 2**31, -(2**63), 2**64 + 1])
    if kind == "float":
        return rng.choice([0.5, -1e308, 1e-300, 3.0])
    if kind == "str":
        return rng.choice(["", "BYTES", "FP32", "labels", "aGVsbG8=", "%%%", "\u0000x", "9" * 50])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "huge":
        return 10 ** rng.randrange(20, 400)
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == "dict":
        keys = ["name", "shape", "datatype", "data", "parameters", "binary_data_size", "x"]
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}
    return DEEP  # to_json puts nesting deeper than any parser should follow here


def to_json(rng: random.Random, document: Any) -> bytes:
    levels = rng.choice([150, 201, 5000, 100_000])
    return json.dumps(document).replace(json.dumps(DEEP), "[" * levels + "]" * levels).encode()


def good_document(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.5:
        return {"id": "x", "inputs": [{"name": "images", "shape": [1], "datatype": "BYTES",
                                       "data": [base64.b64encode(PNG).decode()]}],
                "outputs": [{"name": "labels", "parameters": {"binary_data": False}}]}
    return {"inputs": [{"name": "pixels", "shape": [1, 1, 32, 32], "datatype": "FP32",
                        "data": [1.0] * 1024}], "parameters": {"binary_data_output": False}}


def replace_somewhere(rng: random.Random, document: Any) -> Any:
    """`document` with one randomly chosen value (at any depth) replaced by random JSON."""
    if not isinstance(document, (dict, list)) or not document or rng.random() < 0.25:
        return random_json(rng)
    keys = list(document) if isinstance(document, dict) else list(range(len(document)))
    key = rng.choice(keys)
    document[key] = replace_somewhere(rng, document[key])
    return document


def v2_json(rng: random.Random) -> Request:
    document = replace_somewhere(rng, copy.deepcopy(good_document(rng)))
    body = to_json(rng, document)
    if rng.random() < 0.3:
        body = mutate(rng, body)
    return INFER, {"content": body, "headers": {"Content-Type": "application/json"}}


def v2_binary(rng: random.Random) -> Request:
    elements = [PNG, mutate(rng, PNG), b""][: rng.randrange(1, 4)]
    blob = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
    header = {"inputs": [{"name": "images", "shape": [len(elements)], "datatype": "BYTES",
                          "parameters": {"binary_data_size": len(blob)}}]}
    if rng.random() < 0.5:
        header = replace_somewhere(rng, header)
    head = to_json(rng, header)
    length: str = str(len(head))
    damage = rng.randrange(6)
    if damage == 0:
        length = rng.choice(["", "-1", "1e3", "0x10", "1 2", "9" * rng.randrange(16, 6000),
                             str(len(head) + len(blob) + 1), "0"])
    elif damage == 1:
        blob = mutate(rng, blob)
    elif damage == 2:
        length = str(rng.randrange(len(head) + len(blob) + 1))
    elif damage == 3:
        head = mutate(rng, head)
    return INFER, {"content": head + blob, "headers": {
        "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": length}}


def v1_multipart(rng: random.Random) -> Request:
    boundary = rng.choice(["xyz", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "a" * 70])
    parts = []
    for index in range(rng.randrange(1, 5)):
        disposition = rng.choice([f'form-data; name="file"; filename="{index}.png"',
                                  'form-data; name="file"', "form-data", 'form-data; name=""',
                                  'attachment; filename="x"', 'form-data; name="f"; '
                                  'filename*=UTF-8\'\'%e2%82%ac.png', 'form-data; name="\\"'])
        payload = PNG if rng.random() < 0.5 else mutate(rng, PNG)
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: "
                     f"image/png\r\n\r\n".encode() + payload + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    if rng.random() < 0.6:
        body = mutate(rng, body)
    header_boundary = boundary if rng.random() < 0.8 else rng.choice(["", "other", '"'])
    extra = rng.choice(["", "; charset=utf-8", "; charset=nope", "; boundary=second"])
    return PREDICT, {"content": body, "headers": {
        "Content-Type": f"multipart/form-data; boundary={header_boundary}{extra}"}}


def v1_raw(rng: random.Random) -> Request:
    body = mutate(rng, PNG)
    if rng.random() < 0.2:  # a header claiming random sizes, up to a bomb
        width, height = rng.choice([0, 1, 9400, 70000, 2**31 - 1]), rng.randrange(1, 70000)
        body = PNG[:16] + width.to_bytes(4, "big") + height.to_bytes(4, "big") + PNG[24:]
    content_type = rng.choice(["image/png", "image/jpeg", "application/octet-stream",
                               "image/x-whatever", "text/plain", ""])
    query = rng.choice(["", "?topk=3", "?topk=0", "?topk=-5", "?topk=" + "9" * 30, "?topk=x"])
    return PREDICT + query, {"content": body, "headers": {"Content-Type": content_type}}


GENERATORS: dict[str, Callable[[random.Random], Request]] = {
    "v1 multipart": v1_multipart, "v1 raw": v1_raw, "v2 json": v2_json, "v2 binary": v2_binary}


@pytest.fixture(scope="module")
def server(digits_run: Path) -> Iterator[str]:
    with running(create_app(digits_run, ServeSettings(max_queue=4, max_upload_mb=2.0))) as url:
        yield url


@pytest.mark.slow
def test_fuzzed_requests_never_get_a_5xx(server: str) -> None:
    rng = random.Random(SEED)
    counts: dict[str, Counter[int]] = {kind: Counter() for kind in GENERATORS}
    failures = []
    started = time.perf_counter()
    with httpx.Client(base_url=server, timeout=30) as client:
        for kind, generate in GENERATORS.items():
            for number in range(PER_KIND):
                path, kwargs = generate(rng)
                answer = client.post(path, **kwargs)
                counts[kind][answer.status_code] += 1
                if answer.status_code >= 500:
                    failures.append((kind, number, answer.status_code, answer.text[:300]))
        assert client.get("/healthz").status_code == 200
        good = client.post(PREDICT, content=PNG, headers={"Content-Type": "image/png"})
        assert good.status_code == 200
    seconds = time.perf_counter() - started
    total = sum(sum(counter.values()) for counter in counts.values())
    for kind, counter in counts.items():
        print(f"{kind:<13} " + "  ".join(f"{code}: {n}" for code, n in sorted(counter.items())))
    print(f"{total} requests in {seconds:.1f} s")
    assert total >= 200 and not failures, failures
