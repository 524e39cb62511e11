"""The REST service: `create_app(model_path, settings)` wraps a Predictor in FastAPI.

app.py (routes) · batching.py (dynamic batching) · decoding.py (upload -> tensor, with
the 4xx for every bad input) · kserve.py (the Open Inference Protocol's tensors) ·
errors.py · security.py (API key, body size) · metrics.py (Prometheus text) · live.py (a
uvicorn server in a thread, for tests and benchmarks) · static/index.html (the web page).
"""

from imgcls.serve.app import create_app
from imgcls.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
