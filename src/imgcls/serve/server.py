"""How uvicorn runs the app: the options `imgcls serve`, the tests and the benches share."""

from __future__ import annotations

from typing import Any

import uvicorn
from fastapi import FastAPI

from imgcls.serve.settings import ServeSettings

# Connections (and requests) beyond the queue's bound that uvicorn still lets in. Every
# queued image belongs to an open request, so past max_queue open requests the batcher
# refuses anyway (503 JSON + Retry-After). The margin leaves room for what holds no queue
# place: health probes, /metrics scrapes, requests whose body is still being read or
# decoded, idle keep-alive connections; past it uvicorn answers 503 itself, before reading
# a byte of the body, so a flood of connections costs neither memory nor decoding.
CONCURRENCY_MARGIN = 64


def concurrency_limit(settings: ServeSettings) -> int:
    return settings.max_queue + CONCURRENCY_MARGIN


def uvicorn_config(app: FastAPI, **overrides: Any) -> uvicorn.Config:
    """The app's uvicorn.Config, from its ServeSettings; `overrides` win (tests bind a free
    loopback port and log less)."""
    settings: ServeSettings = app.state.service.settings
    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "log_level": settings.log_level,
        "limit_concurrency": concurrency_limit(settings),
        # On SIGTERM uvicorn stops accepting, lets open requests finish (at most this
        # long), then runs the lifespan's shutdown, which drains the batch queue.
        "timeout_graceful_shutdown": int(settings.timeout_s) + 5,
    }
    return uvicorn.Config(app, **{**options, **overrides})
