"""The phone app (imgcls.webapp) for the served model, at /app/.

Built on the first request for it, once, in memory: exporting a model to ONNX takes seconds,
which `imgcls serve` should not spend at startup for a page nobody may open. Under an API
key the app's shell (page, scripts, runtime, icons) is public like the page at /, while its
model and labels (webapp.KEYED_FILES) need the key: the page asks for it once, and its
service worker then keeps them for offline use.
"""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from imgcls.webapp.build import PAGE_FILES, SERVICE_WORKER, web_app_files
from imgcls.webapp.icons import ICON_SIZES
from imgcls.webapp.runtime import RUNTIME_FOLDER, vendor_record

PREFIX = "/app"
# Types a browser insists on: module scripts must be JavaScript, and WebAssembly streams
# only as application/wasm; Python's table may lack them on a bare system.
_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
          ".webmanifest": "application/manifest+json", ".onnx": "application/octet-stream"}


def public_paths() -> frozenset[str]:
    """The app's paths that need no API key: all but its model and labels."""
    runtime = [*vendor_record()["files"], "LICENSE", "VENDOR.json"]
    names = [*PAGE_FILES, SERVICE_WORKER, "manifest.webmanifest",
             *(f"icon-{size}.png" for size in ICON_SIZES),
             *(f"{RUNTIME_FOLDER}/{name}" for name in runtime)]
    return frozenset({PREFIX, f"{PREFIX}/", *(f"{PREFIX}/{name}" for name in names)})


class WebAppFiles:
    """The app's files, built once on first use; concurrent first requests wait for one."""

    def __init__(self, model_path: str | Path, name: str) -> None:
        self.model_path, self.name = model_path, name
        self._files: dict[str, bytes] | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> dict[str, bytes]:
        async with self._lock:
            if self._files is None:
                self._files = await run_in_threadpool(web_app_files, self.model_path,
                                                      name=self.name)
        return self._files


def add_web_app(app: FastAPI, model_path: str | Path, name: str) -> None:
    files = WebAppFiles(model_path, name)

    @app.get(PREFIX, include_in_schema=False)
    async def app_root() -> RedirectResponse:
        # The page's relative URLs (app.js, sw.js) must resolve under /app/, not /.
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    @app.get(PREFIX + "/{path:path}", include_in_schema=False)
    async def app_file(path: str) -> Response:
        name = path or "index.html"
        data = (await files.get()).get(name)
        if data is None:
            raise HTTPException(404, f"the app has no file {name!r}")
        # no-cache: the service worker, not the HTTP cache, keeps the app for offline use.
        return Response(data, media_type=_media_type(name),
                        headers={"Cache-Control": "no-cache"})


def _media_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"

