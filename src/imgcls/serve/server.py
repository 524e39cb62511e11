"""How uvicorn runs the app: `run_service` is `imgcls serve` (the CLI parses its flags and
calls it); uvicorn_config gives the options it, the tests and the benches share.

uvicorn and FastAPI are imported on use: this module is importable in a core install, where
run_service's first step says which [serve] packages are missing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from imgcls.errors import UserError
from imgcls.serve.settings import ServeSettings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

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
    import uvicorn

    settings: ServeSettings = app.state.service.settings
    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "log_level": settings.log_level,
        "limit_concurrency": concurrency_limit(settings),
        # On SIGTERM uvicorn stops accepting, lets open requests finish (at most this
        # long), then runs the lifespan's shutdown, which drains the batch queue.
        "timeout_graceful_shutdown": int(settings.timeout_s) + 5,
    }
    return uvicorn.Config(app, **{**options, **overrides})


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def run_service(model: str | None, settings: ServeSettings, *, api_key_file: str | None = None,
                insecure: bool = False, say: Callable[[str], None] = _to_stderr) -> int:
    """Serve `model` (a model.safetensors, run directory or .onnx) until uvicorn stops; 0.

    In order: the [serve] packages are there, a model is given, the API key comes from
    settings.api_key or `api_key_file` (not both), the host is safe to serve on (see
    check_exposure), then the app is built and `say` announces it before uvicorn runs.
    """
    from imgcls.utils.extras import require

    require("imgcls serve", "serve", "fastapi", "uvicorn")
    import uvicorn

    from imgcls.serve.app import create_app

    if not model:
        raise UserError("serve needs a MODEL (a model.safetensors, run directory or .onnx), "
                        "or IMGCLS_MODEL")
    settings = with_key_file(settings, api_key_file)
    check_exposure(settings, insecure=insecure, say=say)
    app = create_app(model, settings)
    say(f"imgcls: serving {app.state.service.model_name} on "
        f"http://{settings.host}:{settings.port} (docs at /docs)")
    uvicorn.Server(uvicorn_config(app)).run()
    return 0


def with_key_file(settings: ServeSettings, api_key_file: str | None) -> ServeSettings:
    """`settings` with the API key read from `api_key_file` (a Docker or Kubernetes secret),
    when given; a key given both ways is refused."""
    if settings.api_key and api_key_file:
        raise UserError("give the API key once: --api-key (IMGCLS_API_KEY) or "
                        "--api-key-file (IMGCLS_API_KEY_FILE), not both")
    if not api_key_file:
        return settings
    from imgcls.serve.security import read_key_file

    return replace(settings, api_key=read_key_file(api_key_file))


def check_exposure(settings: ServeSettings, *, insecure: bool,
                   say: Callable[[str], None] = _to_stderr) -> None:
    """Safe by default: a port others can reach needs an API key, or an explicit
    --insecure (then a warning, through `say`)."""
    from imgcls.serve.security import is_loopback

    if is_loopback(settings.host) or settings.api_key:
        return
    if not insecure:
        raise UserError(f"refusing to serve on {settings.host} without an API key (anyone "
                        "who can reach the port could use the model): set --api-key or "
                        "IMGCLS_API_KEY (or IMGCLS_API_KEY_FILE), bind --host 127.0.0.1, or "
                        "pass --insecure (IMGCLS_INSECURE=1) to serve it open")
    say(f"imgcls: warning: --insecure: serving on {settings.host} without an API key; "
        "anyone who can reach this port can use the model")
