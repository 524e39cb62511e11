"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand: four
series do not need a dependency. Everything is updated on the event loop's thread."""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)  # per bucket, not yet cumulative
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.buckets):
            self.counts[index] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        prefix = f"{labels}," if labels else ""
        lines, cumulative = [], 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            cumulative += count
            lines.append(f'{name}_bucket{{{prefix}le="{bound:g}"}} {cumulative}')
        lines.append(f'{name}_bucket{{{prefix}le="+Inf"}} {self.count}')
        suffix = f"{{{labels}}}" if labels else ""
        lines += [f"{name}_sum{suffix} {self.total:.6f}", f"{name}_count{suffix} {self.count}"]
        return lines


class Metrics:
    def __init__(self, queue_depth: Callable[[], int]) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.inference_seconds = Histogram(LATENCY_BUCKETS)
        self.images = 0
        self._queue_depth = queue_depth

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def record_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference_seconds.observe(seconds)
        self.images += size

    def render(self) -> str:
        lines = ["# HELP imgcls_requests_total HTTP requests by route and status.",
                 "# TYPE imgcls_requests_total counter"]
        for (method, route, status), count in sorted(self.requests.items()):
            lines.append(f'imgcls_requests_total{{method="{method}",route="{_escape(route)}",'
                         f'status="{status}"}} {count}')
        lines += ["# HELP imgcls_request_duration_seconds Request latency by route.",
                  "# TYPE imgcls_request_duration_seconds histogram"]
        for route, histogram in sorted(self.latency.items()):
            lines += histogram.lines("imgcls_request_duration_seconds",
                                     f'route="{_escape(route)}"')
        lines += ["# HELP imgcls_batch_size Images per forward pass.",
                  "# TYPE imgcls_batch_size histogram",
                  *self.batch_size.lines("imgcls_batch_size"),
                  "# HELP imgcls_inference_duration_seconds Seconds per forward pass.",
                  "# TYPE imgcls_inference_duration_seconds histogram",
                  *self.inference_seconds.lines("imgcls_inference_duration_seconds"),
                  "# HELP imgcls_images_total Images classified.",
                  "# TYPE imgcls_images_total counter",
                  f"imgcls_images_total {self.images}",
                  "# HELP imgcls_queue_depth Images waiting for a forward pass.",
                  "# TYPE imgcls_queue_depth gauge",
                  f"imgcls_queue_depth {self._queue_depth()}"]
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


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

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            self.metrics.record_request(scope["method"], route, status,
                                        time.perf_counter() - started)
