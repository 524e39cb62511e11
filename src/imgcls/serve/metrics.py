"""Prometheus metrics through prometheus_client, in a registry of the app's own: several apps
in one process (tests, benches) each count their own requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# nginx's "client closed request": the client left before its answer was sent.
CLIENT_CLOSED = 499


class Metrics:
    def __init__(self, queue_depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter("imgcls_requests", "HTTP requests by route and status.",
                                ("method", "route", "status"), registry=registry)
        self.latency = Histogram("imgcls_request_duration_seconds", "Request latency by route.",
                                 ("route",), buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_size = Histogram("imgcls_batch_size", "Images per forward pass.",
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.inference_seconds = Histogram("imgcls_inference_duration_seconds",
                                           "Seconds per forward pass.",
                                           buckets=LATENCY_BUCKETS, registry=registry)
        self.images = Counter("imgcls_images", "Images classified.", registry=registry)
        self.batch_failures = Counter("imgcls_batch_failures",
                                      "Forward passes that raised (their requests got 500).",
                                      registry=registry)
        depth = Gauge("imgcls_queue_depth", "Images waiting for a forward pass.",
                      registry=registry)
        depth.set_function(queue_depth)  # read at scrape time, never stale

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def record_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference_seconds.observe(seconds)
        self.images.inc(size)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition the scraper's Accept header asks for (OpenMetrics or Prometheus
        text), and its content type."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


class MetricsMiddleware:
    """Counts every HTTP request by its route template (bounded label values) and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app dies before answering
        answered = False

        async def send_and_note(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except (ClientDisconnect, asyncio.CancelledError):  # guard.py ends these quietly
            if not answered:
                status = CLIENT_CLOSED
            raise
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            self.metrics.record_request(scope["method"], route, status,
                                        time.perf_counter() - started)
