"""SIGTERM: `imgcls serve` stops accepting, answers every request already queued, then
exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imgcls.serve.live import free_port, wait_ready

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_drains_the_queue(digits_run: Path, tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    Image.effect_noise((32, 32), 50).save(image)
    port = free_port()
    environment = {**os.environ, "IMGCLS_MAX_WAIT_MS": "1500", "IMGCLS_MAX_BATCH": "64",
                   "IMGCLS_LOG_LEVEL": "warning"}
    server = subprocess.Popen(
        [sys.executable, "-m", "imgcls.cli.serve", "serve", str(digits_run), "--port",
         str(port)], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    statuses: list[int] = []
    try:
        wait_ready(base_url)

        def send() -> None:
            answer = httpx.post(f"{base_url}/v1/predict", content=image.read_bytes(),
                                headers={"Content-Type": "image/png"}, timeout=30)
            statuses.append(answer.status_code)

        clients = [threading.Thread(target=send) for _ in range(6)]
        for client in clients:
            client.start()
        _wait_for_depth(base_url, 6)  # all six wait for their batch (up to 1.5 s)
        server.send_signal(signal.SIGTERM)
        for client in clients:
            client.join(timeout=30)
        # uvicorn re-raises the signal once it has shut down gracefully: the exit status
        # says "ended by SIGTERM", as a process supervisor expects.
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert statuses == [200] * 6
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base_url}/healthz", timeout=2)


def _wait_for_depth(base_url: str, depth: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if f"imgcls_queue_depth {depth}" in httpx.get(f"{base_url}/metrics").text:
            return
        time.sleep(0.01)
    raise AssertionError(f"the queue never reached {depth} images")
