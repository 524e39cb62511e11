"""`create_app(model_path, settings)`: the FastAPI application of `imgcls serve`.

Routes: /v1/predict and /v1/model (routes_v1), the KServe v2 protocol (routes_v2),
/healthz, /readyz, /metrics, the web page at / and the phone app at /app/ (webapp_route).
With --explain only: POST /v1/explain, Grad-CAM heat maps (explain_route).
OpenAPI docs at /docs.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse

from imgcls.serve import routes_v1, routes_v2
from imgcls.serve.errors import install_error_handlers
from imgcls.serve.explain_route import add_explain_route
from imgcls.serve.guard import ClientGuardMiddleware
from imgcls.serve.metrics import MetricsMiddleware
from imgcls.serve.security import OPEN_PATHS, ApiKeyMiddleware
from imgcls.serve.service import Service
from imgcls.serve.settings import ServeSettings
from imgcls.serve.webapp_route import add_web_app, public_paths
from imgcls.version import __version__


def create_app(model_path: str | Path, settings: ServeSettings | None = None) -> FastAPI:
    """Loads the model now (a bad path fails here, before any port is bound); warms it up
    and starts the batcher when the server starts."""
    settings = settings or ServeSettings()
    service = Service(model_path, settings)
    app = FastAPI(title="imgcls", version=__version__, lifespan=service.lifespan,
                  description=f"Image classifier `{service.model_name}`: "
                              f"{len(service.class_names)} classes.")
    app.state.service = service
    install_error_handlers(app)
    app.include_router(routes_v1.router)
    app.include_router(routes_v2.router)
    if settings.explain:  # off (404) unless asked: it loads the torch network a second time
        add_explain_route(app, model_path, settings)
    _add_operations(app)
    add_web_app(app, model_path, service.model_name)  # the phone app at /app/
    # add_middleware wraps what is there: the last added runs first. Metrics see every
    # answer (401s included); CORS answers preflights before the key is checked; the
    # client guard, outermost, can stop everything below when the client leaves.
    if settings.api_key:
        # The phone app's shell is public like the page at /; its model needs the key.
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key,
                           open_paths=OPEN_PATHS | public_paths())
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    app.add_middleware(ClientGuardMiddleware, read_timeout_s=settings.read_timeout_s)
    return app


def _add_operations(app: FastAPI) -> None:
    page = resources.files("imgcls.serve").joinpath("static/index.html").read_text("utf-8")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/healthz", tags=["operations"],
             summary="Liveness: the process answers and its inference worker runs")
    async def healthz(request: Request) -> Response:
        healthy = request.app.state.service.healthy
        return _status(healthy, "ok", "inference worker stopped")

    @app.get("/readyz", tags=["operations"], summary="Readiness: the model is loaded and "
             "warmed up, its inference worker runs, and it is not shutting down")
    async def readyz(request: Request) -> Response:
        return _status(request.app.state.service.ready, "ready", "not ready")

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        body, content_type = request.app.state.service.metrics.render(
            request.headers.get("accept"))
        return Response(body, media_type=content_type)


def _status(good: bool, good_word: str, bad_word: str) -> Response:
    return JSONResponse({"status": good_word if good else bad_word},
                        status_code=200 if good else 503)
