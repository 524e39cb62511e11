"""A real uvicorn server in a background thread on 127.0.0.1: for tests and benchmarks
that talk HTTP to the service without a subprocess."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from imgcls.serve.server import uvicorn_config

_START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running(app: FastAPI, *, port: int | None = None) -> Iterator[str]:
    """Serve `app` until the block ends; yields the base URL once /readyz answers 200."""
    port = port or free_port()
    config = uvicorn_config(app, host="127.0.0.1", port=port, log_level="warning",
                            timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="imgcls-uvicorn", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, thread)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def wait_ready(base_url: str, thread: threading.Thread | None = None) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if thread is not None and not thread.is_alive():
            raise RuntimeError("the server stopped while starting")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{base_url} was not ready within {_START_TIMEOUT_S:g} s")
