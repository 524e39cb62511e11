"""How long the exported app's model takes for one image, printed by `imgcls export --format
web`: in headless Chromium through Playwright, with the app's own model.onnx and vendored
onnxruntime-web set up as app.js sets them (wasm, one thread), when Playwright and a Chromium
are here; otherwise onnxruntime on this CPU, labelled as an estimate and not the browser.
Measuring never fails an export: any trouble with the browser falls back to the estimate."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgcls.webapp.build import INFO_FILE, MODEL_FILE
from imgcls.webapp.runtime import RUNTIME_FOLDER, vendor_record

RUNS = 10
WARM_UP = 2  # the first run compiles wasm kernels and sizes buffers: not what a user waits
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PAGE_PATH = "/__imgcls_latency__.html"  # served from memory, never written into the app
_PAGE = (f'<!doctype html><meta charset="utf-8"><title>latency</title>'
         f'<script src="{RUNTIME_FOLDER}/ort.wasm.min.js"></script>').encode()
# The app's own settings (static/app.js): one thread, no proxy worker, the runtime from ort/.
_MEASURE = """async ({ runs, warmUp, runtime, info, model }) => {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL(`${runtime}/`, document.baseURI).href;
  const meta = await (await fetch(info)).json();
  const bytes = await (await fetch(model)).arrayBuffer();
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  const { channels, height, width } = meta.input;
  const pixels = new Float32Array(channels * height * width);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 37) % 256;  // 0..255, as the page
  const shape = [1, channels, height, width];
  const feeds = { [meta.input_name]: new ort.Tensor("float32", pixels, shape) };
  const times = [];
  for (let i = 0; i < warmUp + runs; i++) {
    const started = performance.now();
    await session.run(feeds);
    if (i >= warmUp) times.push(performance.now() - started);
  }
  return times;
}"""


@dataclass(frozen=True)
class Latency:
    median_ms: float
    runs: int
    where: str  # what ran it: the browser and runtime, or the CPU estimate and why
    in_browser: bool

    def describe(self) -> str:
        return (f"latency for one image: {self.median_ms:.1f} ms median of {self.runs} runs "
                f"after {WARM_UP} warm-up, {self.where}")


def measure_latency(folder: Path, runs: int = RUNS) -> Latency:
    """In Chromium when possible, else the labelled onnxruntime estimate."""
    reason = browser_missing()
    if reason is None:
        try:
            return browser_latency(folder, runs)
        except Exception as error:  # Playwright's errors are untyped; never fail an export
            reason = f"the browser run failed: {str(error).splitlines()[0][:160]}"
    return cpu_latency(folder, runs, reason)


def browser_missing() -> str | None:
    """Why the browser cannot be measured here, or None when it can be tried."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed"
    return None


def chromium_executable() -> str | None:
    """IMGCLS_CHROMIUM, else a Chromium or Chrome on PATH; None: Playwright's own build."""
    named = os.environ.get("IMGCLS_CHROMIUM")
    if named:
        return named
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def browser_latency(folder: Path, runs: int = RUNS) -> Latency:
    """The app's model run `runs` times in headless Chromium, after the warm-up."""
    from playwright.sync_api import sync_playwright

    with _serving(folder) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable(),
            args=["--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(url + PAGE_PATH.lstrip("/"), timeout=30_000)
            times = page.evaluate(_MEASURE, {"runs": runs, "warmUp": WARM_UP,
                                             "runtime": RUNTIME_FOLDER, "info": INFO_FILE,
                                             "model": MODEL_FILE})
            version = browser.version
        finally:
            browser.close()
    where = (f"headless Chromium {version} (onnxruntime-web {vendor_record()['version']} "
             "wasm, 1 thread, as the app runs it)")
    return Latency(statistics.median(times), len(times), where, in_browser=True)


def cpu_latency(folder: Path, runs: int, reason: str) -> Latency:
    """onnxruntime on this CPU, one thread like the page: an estimate, not the browser."""
    import json

    import numpy as np
    import onnxruntime

    from imgcls.export.session import OnnxRunner

    info = json.loads((folder / INFO_FILE).read_text("utf-8"))
    runner = OnnxRunner(folder / MODEL_FILE, threads=1)
    shape = info["input"]
    pixels = (np.arange(shape["channels"] * shape["height"] * shape["width"]) * 37 % 256)
    image = pixels.astype(np.float32).reshape(1, shape["channels"], shape["height"],
                                              shape["width"])
    times = []
    for index in range(WARM_UP + runs):
        started = time.perf_counter()
        runner.outputs(image, 1)
        if index >= WARM_UP:
            times.append((time.perf_counter() - started) * 1000)
    where = (f"onnxruntime {onnxruntime.__version__} on this CPU, 1 thread: an estimate, "
             f"NOT the browser ({reason})")
    return Latency(statistics.median(times), len(times), where, in_browser=False)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """The app folder, plus the measuring page from memory; wasm and modules with the types
    browsers insist on (older Pythons' tables lack them)."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".mjs": "text/javascript",
                      ".js": "text/javascript"}

    def do_GET(self) -> None:
        if self.path != PAGE_PATH:
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(_PAGE)))
        self.end_headers()
        self.wfile.write(_PAGE)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def _serving(folder: Path) -> Iterator[str]:
    """The folder on a loopback port for as long as the block runs; yields its URL."""
    handler = functools.partial(_Handler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
