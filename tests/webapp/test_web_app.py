"""The phone app (`imgcls export --format web`, and /app/ on the service) in headless
Chromium: it installs its service worker and then classifies with the server gone and the
network off; on 50 images of many sizes and modes its pixels are the Predictor's, byte for
byte, and its probabilities within 1e-3; it asks nothing of any other origin."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from trustfiles import rejecting_all

from imgcls.data.sources import load_source
from imgcls.predict import Predictor
from imgcls.serve import ServeSettings, create_app
from imgcls.serve.live import running
from imgcls.webapp.runtime import vendor_record

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"viewport": {"width": 375, "height": 812}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
READY = "window.imgclsApp && window.imgclsApp.ready"
INSTALLED = ("navigator.serviceWorker.controller !== null && "
             "document.getElementById('offline').textContent.includes('works offline')")
PARITY_IMAGES = 50

_needs = pytest.mark.skipif(not CHROMIUM.exists(), reason="no chromium here")
pytestmark = [pytest.mark.browser, pytest.mark.slow, _needs]


class StaticServer:
    """A plain static file server (Python's http.server) on loopback, in a thread."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class Watch:
    """What a page does that it should not: console errors, page errors, and requests to
    anything but its own origin (blob: URLs of the photo preview are its own)."""

    def __init__(self, context: Any, origin: str) -> None:
        self.errors: list[str] = []
        self.outside: list[str] = []
        allowed = (origin, f"blob:{origin}")
        context.on("request", lambda request: None if request.url.startswith(allowed)
                   else self.outside.append(request.url))
        context.on("page", self.watch_page)

    def watch_page(self, page: Any) -> None:
        page.on("console", lambda message: self.errors.append(message.text)
                if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(str(error)))


@pytest.fixture(scope="module")
def web_folder(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app exported by the CLI, as a user would."""
    folder = tmp_path_factory.mktemp("web") / "app"
    result = subprocess.run(
        [sys.executable, "-m", "imgcls", "export", str(digits_run), "--format", "web",
         "--output", str(folder), "--check-samples", "32"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "parity on 32 random images" in result.stdout
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


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


def classify(page: Any, path: Path) -> dict[str, Any]:
    """Choose `path` in the page's file input and wait for its answer (or error)."""
    count = page.evaluate("window.imgclsApp.classified")
    page.set_input_files("#file", str(path))
    page.wait_for_function(f"window.imgclsApp.classified > {count}", timeout=30_000)
    return page.evaluate("window.imgclsApp.last")


@contextmanager
def app_page(browser: Any, web_folder: Path) -> Iterator[tuple[StaticServer, Any, Watch]]:
    """The exported app served statically and opened on a phone-sized page, ready to
    classify; the page's context and the server are closed afterwards."""
    server = StaticServer(web_folder)
    context = browser.new_context(**PHONE)
    watch = Watch(context, server.url.rstrip("/"))
    try:
        page = context.new_page()
        page.goto(server.url, timeout=30_000)
        page.wait_for_function(READY, timeout=60_000)
        yield server, page, watch
    finally:
        context.close()
        server.stop()


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
    result = subprocess.run(
        [sys.executable, "-m", "imgcls", "export", str(model), "--format", "web",
         "--output", str(folder), "--check-samples", "8"],
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
