"""The phone app (`imgcls export --format web`, and /app/ on the service) in headless
Chromium: it installs its service worker and then classifies with the server gone and the
network off; on 50 images of many sizes and modes its pixels are the Predictor's, byte for
byte, and its probabilities within 1e-3; it asks nothing of any other origin."""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from trustfiles import rejecting_all
from webapp_page import INSTALLED, PHONE, READY, Watch, app_page, classify, needs_chromium

from imgcls.data.sources import load_source
from imgcls.predict.predictor import Predictor
from imgcls.serve import ServeSettings, create_app
from imgcls.serve.live import running
from imgcls.webapp.runtime import vendor_record

PARITY_IMAGES = 50

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]


@pytest.fixture(scope="module")
def web_folder(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app exported by the CLI, as a user would; fp32, whose probabilities must be the
    Predictor's (test_phone_model.py runs the int8 app)."""
    folder = tmp_path_factory.mktemp("web") / "app"
    result = subprocess.run(
        [sys.executable, "-m", "imgcls", "export", str(digits_run), "--format", "web",
         "--output", str(folder), "--check-samples", "32", "--quantize", "none",
         "--latency-runs", "0"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "parity on 32 random images" in result.stdout
    return folder


@pytest.fixture(scope="module")
def predictor(digits_run: Path) -> Predictor:
    return Predictor(digits_run, device="cpu")


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(load_source("digits").images[3, 0].numpy()).resize((96, 120)).save(path)
    return path


def parity_images(folder: Path, count: int) -> list[Path]:
    """Digits and noise at sizes from 9 to 300 px, square and not, as gray, RGB, palette and
    RGBA (alpha 0 or 255: a browser keeps those exact) PNGs; some already 32x32 or 32 px on
    one side, so that every branch of the resize runs."""
    rng = np.random.default_rng(15)
    digits = load_source("digits").images[:, 0].numpy()
    sizes = [(32, 32), (32, 57), (80, 32), (9, 9), (300, 41)]
    paths = []
    for index in range(count):
        width, height = sizes[index] if index < len(sizes) else rng.integers(9, 301, 2)
        if index % 5 == 4:
            pixels = rng.integers(0, 256, (int(height), int(width), 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
        else:
            image = Image.fromarray(digits[index]).resize((int(width), int(height)),
                                                          Image.Resampling.BICUBIC)
        image = _as_mode(image, index % 4, rng)
        paths.append(folder / f"image-{index:02d}.png")
        image.save(paths[-1])
    return paths


def _as_mode(image: Image.Image, kind: int, rng: np.random.Generator) -> Image.Image:
    if kind == 0:
        return image.convert("L")
    tint = Image.merge("RGB", [image.convert("L").point(lambda v, f=f: int(v * f))
                               for f in rng.uniform(0.3, 1.0, 3)])
    if kind == 1:
        return tint
    if kind == 2:
        return tint.quantize(64)
    alpha = Image.fromarray(np.where(rng.random(image.size[::-1]) < 0.2, 0, 255)
                            .astype(np.uint8))
    return Image.merge("RGBA", [*tint.split(), alpha])


def test_export_writes_a_complete_app(web_folder: Path) -> None:
    names = {str(path.relative_to(web_folder)) for path in web_folder.rglob("*")
             if path.is_file()}
    record = vendor_record()
    runtime = {f"ort/{name}" for name in record["files"]}
    assert runtime | {"index.html", "app.js", "preprocess.js", "sw.js", "model.onnx",
                      "model.json", "manifest.webmanifest", "icon-192.png", "icon-512.png",
                      "ort/LICENSE", "ort/VENDOR.json"} == names
    assert record["files"]  # the loop below checks every one
    for name, expected in record["files"].items():  # copied unchanged from the npm release
        data = (web_folder / "ort" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == expected["sha256"]
    manifest = json.loads((web_folder / "manifest.webmanifest").read_text())
    assert [icon["src"] for icon in manifest["icons"]] == ["icon-192.png", "icon-512.png"]
    for icon in manifest["icons"]:
        with Image.open(web_folder / icon["src"]) as image:
            assert f"{image.width}x{image.height}" == icon["sizes"]
    info = json.loads((web_folder / "model.json").read_text())
    assert info["input"] == {"channels": 1, "height": 32, "width": 32}
    assert len(info["class_names"]) == 10
    page = (web_folder / "index.html").read_text()
    assert 'capture="environment"' in page and "://" not in page  # nothing from elsewhere


def test_installs_and_classifies_offline(browser: Any, web_folder: Path, photo: Path,
                                         predictor: Predictor) -> None:
    with app_page(browser, web_folder) as (server, page, watch):
        page.wait_for_function(INSTALLED, timeout=60_000)  # the worker cached everything
        server.stop()  # nothing left to answer: whatever loads now comes from the cache
        page.context.set_offline(True)
        page.reload(timeout=30_000)
        page.wait_for_function(READY, timeout=60_000)
        result = classify(page, photo)
        assert result["topk"][0]["label"] == predictor.predict(photo)[0].label
        assert page.text_content("#label") == result["topk"][0]["label"]
        assert page.locator(".bar").count() == 5
        assert "ms on this device" in page.text_content("#latency")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert watch.errors == []
    assert watch.outside == []


def test_matches_the_predictor_on_50_images(browser: Any, web_folder: Path, tmp_path: Path,
                                            predictor: Predictor) -> None:
    paths = parity_images(tmp_path, PARITY_IMAGES)
    expected_pixels = torch.stack([predictor.to_uint8(path) for path in paths])
    expected = predictor.probabilities(expected_pixels).numpy()
    with app_page(browser, web_folder) as (_, page, watch):
        results = [classify(page, path) for path in paths]
    for path, result, pixels, probabilities in zip(paths, results, expected_pixels, expected,
                                                   strict=True):
        assert "error" not in result, (path.name, result.get("error"))
        # Pillow 13 runs some two-axis resizes vertical pass first (Pillow #9549, by a rule
        # of its own); the page always goes horizontal first, as Pillow did before, so
        # those images may differ by one level of 255 at some pixels, never more.
        difference = np.abs(np.array(result["pixels"]) - pixels.flatten().numpy().astype(int))
        assert difference.max() <= 1, f"{path.name}: pixels differ by {difference.max()}"
        got = np.array(result["probabilities"])
        assert got.argmax() == probabilities.argmax(), path.name
        assert np.abs(got - probabilities).max() < 1e-3, path.name
        # "None of my classes" by the card's threshold, as the Predictor decides it.
        answer = predictor.predict(path)[0]
        assert result["familiarity"] == pytest.approx(answer.familiarity, abs=1e-3), path.name
        if abs(answer.familiarity - answer.threshold) > 1e-3:
            assert result["unknown"] == answer.unknown, path.name
    exact = sum(result["pixels"] == pixels.flatten().tolist()
                for result, pixels in zip(results, expected_pixels, strict=True))
    largest = max(np.abs(np.array(result["probabilities"]) - probabilities).max()
                  for result, probabilities in zip(results, expected, strict=True))
    print(f"\n{exact}/{len(paths)} images with identical pixels; largest |probability "
          f"difference| {largest:.1e}")
    times = [result["totalMs"] for result in results]
    print(f"in-browser prediction, {len(times)} images: median {statistics.median(times):.1f} "
          f"ms, max {max(times):.1f} ms")
    assert watch.errors == []
    assert watch.outside == []


def test_says_unknown_below_the_threshold(browser: Any, digits_run: Path, photo: Path,
                                          tmp_path: Path) -> None:
    model = rejecting_all(digits_run / "model.safetensors", tmp_path / "model.safetensors")
    folder = tmp_path / "app"
    result = subprocess.run(  # the default: int8 where its check passes, its familiarity too
        [sys.executable, "-m", "imgcls", "export", str(model), "--format", "web",
         "--output", str(folder), "--check-samples", "8", "--latency-runs", "0"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    info = json.loads((folder / "model.json").read_text())
    assert info["familiarity_name"] == "familiarity" and info["threshold"] == 1e9
    with app_page(browser, folder) as (_, page, watch):
        answer = classify(page, photo)
        assert answer["unknown"] is True and answer["label"] == "unknown"
        assert page.text_content("#label") == "unknown"
        assert "None of this model's classes" in page.text_content("#unknown")
        assert page.locator(".bar").count() == 5  # the closest guesses stay shown
    assert watch.errors == []


def test_unreadable_image_gets_a_clear_message(browser: Any, web_folder: Path,
                                               tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    with app_page(browser, web_folder) as (_, page, _):
        result = classify(page, broken)
        status = page.locator("#status")
        assert "could not be read as an image" in result["error"]
        assert '"broken.jpg"' in status.text_content()
        assert "error" in (status.get_attribute("class") or "")
        assert page.is_hidden("#result")


def test_served_app_needs_the_key_for_the_model_only(browser: Any, digits_run: Path,
                                                     photo: Path, predictor: Predictor) -> None:
    key = {"Authorization": "Bearer app-key"}
    with running(create_app(digits_run, ServeSettings(api_key="app-key"))) as base:
        assert httpx.get(f"{base}/app/", timeout=120).status_code == 200  # built on first use
        assert httpx.get(f"{base}/app/model.onnx").status_code == 401
        assert httpx.get(f"{base}/app/model.json").status_code == 401
        assert httpx.get(f"{base}/app/model.onnx", headers=key).status_code == 200
        wasm = httpx.get(f"{base}/app/ort/ort-wasm-simd-threaded.wasm")
        assert wasm.headers["content-type"] == "application/wasm"
        assert httpx.get(f"{base}/app/nothing.js", headers=key).status_code == 404
        context = browser.new_context(**PHONE)
        watch = Watch(context, base)
        try:
            page = context.new_page()
            page.goto(f"{base}/app", timeout=30_000)
            assert page.url == f"{base}/app/"  # redirected, so relative URLs stay under /app/
            page.wait_for_selector("#keyform", state="visible", timeout=30_000)
            page.fill("#key", "app-key")
            page.click("#keyform button")
            page.wait_for_function(READY, timeout=60_000)
            result = classify(page, photo)
            assert result["topk"][0]["label"] == predictor.predict(photo)[0].label
            page.wait_for_function(INSTALLED, timeout=60_000)  # the model cached with the key
        finally:
            context.close()
    # Chrome reports each 401 (before the key was given) as a console error; nothing else.
    assert all("401" in error for error in watch.errors), watch.errors
    assert watch.outside == []
