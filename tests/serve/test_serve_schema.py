"""Requests parsed by schema and images decoded within a budget: every malformed request the
hardening issue names gets its 4xx and stable code (never a 500), too many images are a 413
before decoding, and the budgeted decode gives `imgcls predict`'s pixels."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from test_serve import serve_parser
from test_serve_errors import png_bytes, png_claiming

from imgcls.data.decode import DecodeBudget, _wide_to_luminance, decode_file, torchvision_jpeg
from imgcls.predict.predictor import Predictor
from imgcls.serve import ServeSettings, create_app
from imgcls.serve.live import running

MODEL = "digits-lenet5"
PREDICT, INFER = "/v1/predict", f"/v2/models/{MODEL}/infer"
MAX_IMAGES = 4  # the test server's --max-queue


def infer_json(tensor: dict[str, Any], **document: Any) -> dict[str, Any]:
    return {"content": json.dumps({"inputs": [tensor], **document}).encode(),
            "headers": {"Content-Type": "application/json"}}


def binary_infer(header: bytes, blob: bytes, length: str | bytes) -> dict[str, Any]:
    return {"content": header + blob, "headers": {
        "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": length}}


def multipart(body: bytes, boundary: str = "xyz", extra: str = "") -> dict[str, Any]:
    return {"content": body,
            "headers": {"Content-Type": f"multipart/form-data; boundary={boundary}{extra}"}}


def multipart_body(parts: list[tuple[str, str]], boundary: str = "xyz") -> bytes:
    """(part headers, part body) pairs -> a multipart body."""
    chunks = [f"--{boundary}\r\n{headers}\r\n\r\n{body}\r\n" for headers, body in parts]
    return ("".join(chunks) + f"--{boundary}--\r\n").encode("latin-1")


GOOD_PNG = png_bytes((32, 32))
B64 = base64.b64encode(GOOD_PNG).decode()
PIXELS = {"name": "pixels", "shape": [1, 1, 32, 32], "datatype": "FP32", "data": [0.0] * 1024}
BYTES_HEADER = json.dumps({"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": 8}}]}).encode()
DEEP = 100_000

# (case, path, request kwargs, status, code)
MALFORMED = [
    ("v2: JSON nested 100000 deep", INFER,
     {"content": b'{"inputs": ' + b"[" * DEEP + b"]" * DEEP + b"}"}, 400, "invalid_tensor"),
    ("v2: data nested 100000 deep", INFER,
     {"content": b'{"inputs": [{"name": "p", "shape": [1], "datatype": "BYTES", "data": '
                 + b"[" * DEEP + b"]" * DEEP + b"}]}"}, 400, "invalid_tensor"),
    ("v2: BYTES data mixing lists and strings", INFER,
     infer_json({"name": "images", "shape": [2], "datatype": "BYTES", "data": [[B64], B64]}),
     400, "invalid_tensor"),
    ("v2: BYTES data mixing lists and numbers", INFER,
     infer_json({"name": "images", "shape": [2], "datatype": "BYTES", "data": [[B64], 3]}),
     400, "invalid_tensor"),
    ("v2: FP32 data mixing lists and numbers", INFER,
     infer_json({**PIXELS, "data": [[0.0] * 1023, 1.0]}), 400, "invalid_tensor"),
    ("v2: FP32 data holding strings", INFER,
     infer_json({**PIXELS, "data": ["0"] * 1024}), 400, "invalid_tensor"),
    ("v2: UINT8 value 300", INFER,
     infer_json({**PIXELS, "datatype": "UINT8", "data": [300] * 1024}), 400,
     "invalid_tensor"),
    ("v2: UINT8 value -1", INFER,
     infer_json({**PIXELS, "datatype": "UINT8", "data": [-1] * 1024}), 400,
     "invalid_tensor"),
    ("v2: output parameters a list", INFER,
     infer_json(PIXELS, outputs=[{"name": "labels", "parameters": [1, 2]}]), 400,
     "invalid_tensor"),
    ("v2: output parameters a string", INFER,
     infer_json(PIXELS, outputs=[{"name": "labels", "parameters": "binary"}]), 400,
     "invalid_tensor"),
    ("v2: outputs not a list", INFER, infer_json(PIXELS, outputs={"name": "labels"}), 400,
     "invalid_tensor"),
    ("v2: request parameters a number", INFER, infer_json(PIXELS, parameters=7), 400,
     "invalid_tensor"),
    ("v2: input parameters a list", INFER, infer_json({**PIXELS, "parameters": []}), 400,
     "invalid_tensor"),
    ("v2: shape holding a string", INFER, infer_json({**PIXELS, "shape": [1, "1", 32, 32]}),
     400, "invalid_tensor"),
    ("v2: shape negative", INFER, infer_json({**PIXELS, "shape": [-1, 1, 32, 32]}), 400,
     "invalid_tensor"),
    ("v2: two inputs", INFER, {"json": {"inputs": [PIXELS, PIXELS]}}, 400, "invalid_tensor"),
    ("v2: JSON array, not an object", INFER, {"json": [PIXELS]}, 400, "invalid_tensor"),
    ("v2: id a number", INFER, infer_json(PIXELS, id=5), 400, "invalid_tensor"),
    ("v2: header length of 5000 digits", INFER, binary_infer(BYTES_HEADER, b"\x00" * 8,
                                                              "9" * 5000), 400,
     "invalid_header_length"),
    ("v2: header length not digits", INFER, binary_infer(BYTES_HEADER, b"\x00" * 8, "12a"),
     400, "invalid_header_length"),
    ("v2: header length a unicode digit", INFER,
     binary_infer(BYTES_HEADER, b"\x00" * 8, "1\u0663".encode()), 400,
     "invalid_header_length"),
    ("v2: header length negative", INFER, binary_infer(BYTES_HEADER, b"\x00" * 8, "-4"), 400,
     "invalid_header_length"),
    ("v2: header length past the body", INFER,
     binary_infer(BYTES_HEADER, b"\x00" * 8, str(len(BYTES_HEADER) + 9)), 400,
     "invalid_header_length"),
    ("v2: header length cutting the JSON", INFER,
     binary_infer(BYTES_HEADER, b"\x00" * 8, "10"), 400, "invalid_tensor"),
    ("v2: binary BYTES length past its data", INFER,
     binary_infer(BYTES_HEADER, b"\xff\x00\x00\x00abcd", str(len(BYTES_HEADER))), 400,
     "invalid_tensor"),
    ("v2: binary data with no binary_data_size", INFER,
     binary_infer(json.dumps({"inputs": [PIXELS]}).encode(), b"\x00" * 8,
                  str(len(json.dumps({"inputs": [PIXELS]})))), 400, "invalid_tensor"),
    ("v2: 5 BYTES images (max 4)", INFER,
     infer_json({"name": "images", "shape": [5], "datatype": "BYTES", "data": [B64] * 5}),
     413, "too_many_images"),
    ("v2: shape says 1000 images", INFER,
     infer_json({"name": "images", "shape": [1000], "datatype": "BYTES", "data": [B64]}),
     413, "too_many_images"),
    ("v2: 5 FP32 images (max 4)", INFER,
     infer_json({**PIXELS, "shape": [5, 1, 32, 32], "data": [0.0] * 5 * 1024}), 413,
     "too_many_images"),
    ("v2: BYTES image over --max-pixels", INFER,
     infer_json({"name": "images", "shape": [1], "datatype": "BYTES",
                 "data": [base64.b64encode(png_claiming(7000, 7000)).decode()]}), 413,
     "image_too_large"),
    ("v1: 5 files (max 4)", PREDICT,
     {"files": [("file", (f"{i}.png", GOOD_PNG, "image/png")) for i in range(5)]}, 413,
     "too_many_images"),
    ("v1: 300 tiny parts", PREDICT,
     multipart(multipart_body([('Content-Disposition: form-data; name="f"; filename="a"',
                                "x")] * 300)), 413, "too_many_images"),
    ("v1: 7000x7000 PNG over --max-pixels", PREDICT,
     {"files": {"file": ("huge.png", png_claiming(7000, 7000), "image/png")}}, 413,
     "image_too_large"),
    ("v1: multipart part without a name", PREDICT,
     multipart(multipart_body([("Content-Disposition: form-data", "x")])), 400,
     "invalid_multipart"),
    ("v1: multipart cut in a header", PREDICT,
     multipart(b"--xyz\r\nContent-Disposition: form-da"), 400, None),
    ("v1: multipart of garbage", PREDICT, multipart(bytes(range(256)) * 4), 400, None),
    ("v1: 17 text fields", PREDICT,
     multipart(multipart_body([(f'Content-Disposition: form-data; name="n{i}"', "v")
                               for i in range(17)])), 400, "invalid_multipart"),
]


@pytest.fixture(scope="module")
def server(digits_run: Path) -> Iterator[str]:
    settings = ServeSettings(max_queue=MAX_IMAGES, max_upload_mb=2.0)
    with running(create_app(digits_run, settings)) as base_url:
        yield base_url


@pytest.mark.parametrize("case", MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_request_gets_its_4xx(server: str, case: tuple) -> None:
    name, path, kwargs, status, code = case
    answer = httpx.post(server + path, timeout=30, **kwargs)
    body = answer.json()
    got_code = body["code"] if path.startswith("/v2/") else body["error"]["code"]
    assert (answer.status_code, code or got_code) == (status, got_code), answer.text
    assert httpx.get(server + "/healthz").status_code == 200


def test_image_too_large_names_the_file_and_sizes(server: str) -> None:
    files = {"file": ("huge.png", png_claiming(7000, 7000), "image/png")}
    message = httpx.post(server + PREDICT, files=files).json()["error"]["message"]
    assert "huge.png" in message and "7000x7000" in message and "40000000" in message


def test_good_requests_still_answer(server: str) -> None:
    assert httpx.post(server + INFER, **infer_json(PIXELS)).status_code == 200
    files = [("file", (f"{i}.png", GOOD_PNG, "image/png")) for i in range(MAX_IMAGES)]
    assert httpx.post(server + PREDICT, files=files).status_code == 200
    header = json.dumps({"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": 4 + len(GOOD_PNG)}}],
                         "outputs": [{"name": "labels", "parameters": {"binary_data": False}}]})
    blob = len(GOOD_PNG).to_bytes(4, "little") + GOOD_PNG
    answer = httpx.post(server + INFER, **binary_infer(header.encode(), blob, str(len(header))))
    assert answer.status_code == 200 and answer.json()["outputs"][0]["name"] == "labels"


def test_max_pixels_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgcls.cli.serve import serve_settings

    assert ServeSettings().max_pixels == 40_000_000
    monkeypatch.setenv("IMGCLS_MAX_PIXELS", "100M")
    assert serve_settings(serve_parser().parse_args(["serve"])).max_pixels == 100_000_000
    args = serve_parser().parse_args(["serve", "--max-pixels", "1.5e8"])
    assert serve_settings(args).max_pixels == 150_000_000
    for bad in ("lots", "inf"):
        with pytest.raises(SystemExit):
            serve_parser().parse_args(["serve", "--max-pixels", bad])


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A JPEG (libjpeg's draft path), a 16-bit PNG, and a 3000x2000 RGBA PNG (over 4 M
    pixels: reduced early)."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    smooth = Image.radial_gradient("L").resize((3000, 2000))
    paths = {"jpeg": folder / "photo.jpg", "png16": folder / "deep.png",
             "big": folder / "big.png"}
    Image.merge("RGB", [smooth, smooth.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                        smooth.rotate(90, expand=False)]).save(paths["jpeg"], quality=90)
    Image.fromarray(rng.integers(0, 4096, (300, 200), dtype=np.uint16)).save(paths["png16"])
    Image.merge("RGBA", [smooth, smooth, smooth.point(lambda v: 255 - v), smooth]
                ).save(paths["big"])
    return paths


@pytest.mark.slow
def test_served_pixels_are_predicts(server: str, digits_run: Path,
                                    photo_files: dict[str, Path]) -> None:
    predictor = Predictor(digits_run, device="cpu")
    for path in photo_files.values():
        want = predictor.predict(path, topk=10)[0]
        answer = httpx.post(server + PREDICT + "?topk=10", content=path.read_bytes(),
                            headers={"Content-Type": "application/octet-stream"}).json()
        got = answer["predictions"][0]
        assert [t["label"] for t in got["topk"]] == [t["label"] for t in want.topk], path
        assert got["score"] == pytest.approx(want.score, abs=1e-5), path


@pytest.mark.slow
def test_budget_reduces_big_images_close_to_the_exact_pixels(
        photo_files: dict[str, Path]) -> None:
    exact = decode_file(photo_files["big"], channels=3, size=32).float()
    reduced = decode_file(photo_files["big"], channels=3, size=32, budget=DecodeBudget())
    assert (exact - reduced.float()).abs().mean() < 2.0  # of 255
    small = decode_file(photo_files["png16"], channels=1, size=32, budget=DecodeBudget())
    assert small.equal(decode_file(photo_files["png16"], channels=1, size=32))


def _wide_to_luminance_whole(image: Image.Image) -> np.ndarray:
    """The formula before banding, over the whole image: what training's pixels were."""
    values = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(values)
    low, high = min(0.0, float(values[finite].min())), float(values[finite].max())
    values = np.where(finite, values, low)
    return np.rint((values - low) * (255.0 / (high - low))).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_banded_wide_conversion_keeps_training_pixels(mode: str) -> None:
    rng = np.random.default_rng(1)
    arrays = {"I;16": rng.integers(0, 65535, (1500, 1100), dtype=np.uint16),
              "I": rng.integers(-900, 70000, (1300, 900), dtype=np.int32),
              "F": rng.normal(size=(1200, 1000)).astype(np.float32)}
    array = arrays[mode]
    if mode == "F":
        array[3, 3], array[900, 7] = np.nan, np.inf
    image = Image.fromarray(array)
    assert np.array_equal(np.asarray(_wide_to_luminance(image)), _wide_to_luminance_whole(image))


def test_jpeg_bytes_decode_like_the_file(photo_files: dict[str, Path]) -> None:
    from imgcls.serve.decoding import decode_upload

    class Target:  # what decode_upload reads of the service's Predictor
        channels, image_size, budget = 3, 32, DecodeBudget()
        undrafted_jpeg = staticmethod(torchvision_jpeg)  # the Predictor's JPEG path

        def pixels(self, image: Image.Image) -> Any:
            from imgcls.data.decode import to_uint8_chw

            return to_uint8_chw(image, channels=3, size=32).numpy()

    for path in photo_files.values():
        from_bytes = decode_upload(path.read_bytes(), path.name, Target())  # type: ignore[arg-type]
        from_file = decode_file(path, channels=3, size=32, budget=DecodeBudget())
        assert np.array_equal(from_bytes, from_file.numpy())
