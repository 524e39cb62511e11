"""The service keeps serving through what goes wrong: a forward pass that raises, a worker
that dies, clients that leave or trickle, slow decoding; /metrics is Prometheus text."""

from __future__ import annotations

import io
import logging
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

import imgcls.serve.service
from imgcls.cli import main
from imgcls.serve import ServeSettings, create_app
from imgcls.serve.live import running
from imgcls.serve.server import CONCURRENCY_MARGIN, uvicorn_config

PREDICT = "/v1/predict"


class WorkerKiller(BaseException):
    """Not an Exception: what the worker is allowed to die of (like a cancellation)."""


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((32, 32), 60).save(buffer, "PNG")
    return buffer.getvalue()


def post_png(base_url: str) -> httpx.Response:
    return httpx.post(base_url + PREDICT, content=png_bytes(),
                      headers={"Content-Type": "image/png"}, timeout=30)


def with_failures(app: FastAPI) -> list[BaseException]:
    """What the next forward passes raise, in order (the warm-up passes go through)."""
    predictor = app.state.service.predictor
    real = predictor.array_outputs
    failures: list[BaseException] = []

    def outputs(pixels: np.ndarray, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return real(pixels, **kwargs)

    predictor.array_outputs = outputs
    return failures


@contextmanager
def server_logs() -> Iterator[list[logging.LogRecord]]:
    """Records of the service's and uvicorn's loggers (uvicorn's do not reach the root, so
    caplog misses them); attach once the server runs, since uvicorn configures its own."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(name) for name in ("imgcls.serve", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def metric(base_url: str, name: str, **labels: str) -> float:
    text = httpx.get(base_url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def wait_until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


@pytest.mark.slow
def test_a_failing_batch_fails_its_request_and_the_next_is_served(digits_run: Path) -> None:
    app = create_app(digits_run, ServeSettings(max_wait_ms=1))
    failures = with_failures(app)
    with running(app) as base_url, server_logs() as records:
        failures.append(RuntimeError("out of memory, say"))
        failed = post_png(base_url)
        assert failed.status_code == 500
        assert failed.json()["error"]["code"] == "inference_failed"
        assert "RuntimeError: out of memory, say" in failed.json()["error"]["message"]
        assert post_png(base_url).status_code == 200
        assert httpx.get(base_url + "/readyz").status_code == 200
        assert metric(base_url, "imgcls_batch_failures_total") == 1
    logged = [record for record in records if record.levelno >= logging.ERROR]
    assert len(logged) == 1 and logged[0].exc_info  # once, with its traceback


def test_a_dead_worker_turns_readiness_and_liveness_503(digits_run: Path) -> None:
    app = create_app(digits_run, ServeSettings(max_wait_ms=1))
    failures = with_failures(app)
    with running(app) as base_url:
        failures.append(WorkerKiller())
        in_flight = post_png(base_url)  # its batch was running: it fails, it does not hang
        assert in_flight.status_code == 503
        assert in_flight.json()["error"]["code"] == "unavailable"
        for path in ("/readyz", "/healthz", "/v2/health/ready"):
            assert httpx.get(base_url + path).status_code == 503, path
        after = post_png(base_url)
        assert after.status_code == 503 and after.json()["error"]["code"] == "unavailable"


@pytest.mark.slow
def test_a_client_that_leaves_is_not_an_error_and_its_work_is_dropped(
        digits_run: Path) -> None:
    # A batch waits 3 s for company: time to see the queue empty before it would run.
    app = create_app(digits_run, ServeSettings(max_wait_ms=3000, max_batch=64))
    body = png_bytes()
    with running(app) as base_url, server_logs() as records:
        port = int(base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(request_head(len(body)) + body)
            wait_until(lambda: metric(base_url, "imgcls_queue_depth") == 1)
        left = time.monotonic()
        wait_until(lambda: metric(base_url, "imgcls_queue_depth") == 0)
        assert time.monotonic() - left < 2  # dropped at once, not after the batch
        with socket.create_connection(("127.0.0.1", port)) as client:  # half a body
            client.sendall(request_head(len(body)) + body[:50])
            time.sleep(0.2)
        wait_until(lambda: metric(base_url, "imgcls_requests_total", status="499") == 2)
        time.sleep(3.2)  # the batch's wait is over: the worker skipped the image
        assert metric(base_url, "imgcls_images_total") == 0
        assert post_png(base_url).status_code == 200
    assert [r for r in records if r.levelno >= logging.INFO] == [], records


@pytest.mark.slow
def test_a_body_slower_than_read_timeout_is_408(digits_run: Path) -> None:
    app = create_app(digits_run, ServeSettings(read_timeout_s=0.5))
    with running(app) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(request_head(1000) + b"x" * 10)
            answer = client.recv(65536).decode()
        assert answer.startswith("HTTP/1.1 408")
        assert '"code":"read_timeout"' in answer.replace(" ", "")
        assert post_png(base_url).status_code == 200


@pytest.mark.slow
def test_slow_decoding_is_504(digits_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decode = imgcls.serve.service.decode_upload

    def slow_decode(*args: Any) -> torch.Tensor:
        time.sleep(1.0)
        return decode(*args)

    monkeypatch.setattr(imgcls.serve.service, "decode_upload", slow_decode)
    app = create_app(digits_run, ServeSettings(timeout_s=0.3))
    with running(app) as base_url:
        answer = post_png(base_url)
        assert answer.status_code == 504 and answer.json()["error"]["code"] == "decode_timeout"


def test_uvicorn_limits_concurrency_from_the_queue(digits_run: Path,
                                                   started: list[Any]) -> None:
    assert main(["serve", str(digits_run), "--max-queue", "100"]) == 0
    assert started[0].limit_concurrency == 100 + CONCURRENCY_MARGIN
    app = create_app(digits_run, ServeSettings())  # and the tests' and benches' servers
    assert uvicorn_config(app, port=0).limit_concurrency == 256 + CONCURRENCY_MARGIN


@pytest.mark.slow
def test_metrics_parse_as_prometheus_text(digits_run: Path) -> None:
    with running(create_app(digits_run, ServeSettings())) as base_url:
        assert post_png(base_url).status_code == 200
        answer = httpx.get(base_url + "/metrics")
        assert answer.headers["content-type"].startswith("text/plain; version=")
        openmetrics = httpx.get(base_url + "/metrics",
                                headers={"Accept": "application/openmetrics-text"})
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.endswith("# EOF\n")
        families = {family.name: family
                    for family in text_string_to_metric_families(answer.text)}
        assert {"imgcls_requests", "imgcls_request_duration_seconds", "imgcls_batch_size",
                "imgcls_inference_duration_seconds", "imgcls_images",
                "imgcls_queue_depth"} <= set(families)
        assert families["imgcls_request_duration_seconds"].type == "histogram"
        assert metric(base_url, "imgcls_requests_total", method="POST", route=PREDICT,
                      status="200") == 1
        assert metric(base_url, "imgcls_images_total") == 1
        # Each app counts in its own registry: a second one starts from zero.
        with running(create_app(digits_run, ServeSettings())) as other_url:
            assert metric(other_url, "imgcls_images_total") == 0


def request_head(content_length: int) -> bytes:
    return (f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            f"Content-Length: {content_length}\r\n\r\n").encode()
