"""The REST service: `create_app(model_path, settings)` wraps a Predictor in FastAPI;
`run_service(model, settings, ...)` is `imgcls serve` (server.py).

app.py (routes) · batching.py (dynamic batching; its worker outlives a failing batch) ·
decoding.py (upload -> pixels under the pixel cap and a bound on decodes at once, with the 4xx
for every bad input) · uploads.py (multipart and raw bodies) · kserve.py (the Open Inference
Protocol's tensors as pydantic models) · errors.py · security.py (API key, body size, who may
listen where) · guard.py (clients that leave) · server.py (run_service: the API key file, the
refusal to serve a reachable host without a key, uvicorn and its options) · metrics.py
(prometheus_client) · live.py (a uvicorn server in a thread, for tests and benchmarks) ·
static/index.html (the web page). The Predictor comes from predict.predictor.open_predictor,
the one place that decides between torch, an .onnx file and a cached export.
"""

from __future__ import annotations

from typing import Any

from imgcls.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "run_service"]


def __getattr__(name: str) -> Any:
    # create_app is imported on first use: FastAPI is the [serve] extra, and the CLI reads
    # ServeSettings (this package) for its flags' defaults in a core install too.
    if name == "create_app":
        from imgcls.serve.app import create_app

        return create_app
    if name == "run_service":
        from imgcls.serve.server import run_service

        return run_service
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
