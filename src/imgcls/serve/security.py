"""The API key check, who may be served without one, and the bounded request body."""

from __future__ import annotations

import hmac
import ipaddress
import json
from pathlib import Path

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from imgcls.serve.errors import ApiError, error_body

# Probes must work without the key; the page at / is static and asks for the key itself.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/",
                        "/favicon.ico"})


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`: only this machine can connect. A name other than
    localhost may resolve to anything, so it counts as exposed."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def read_key_file(path: str | Path) -> str:
    """The key in a file (Docker and Kubernetes secrets are files), without the line end
    editors and `echo` add; an empty or unreadable file is the operator's mistake."""
    from imgcls.errors import UserError

    try:
        key = Path(path).read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the API key file {path} ({error})") from None
    if not key:
        raise UserError(f"the API key file {path} is empty")
    return key


class ApiKeyMiddleware:
    """401 for every route but `open_paths` without `Authorization: Bearer <key>`."""

    def __init__(self, app: ASGIApp, api_key: str,
                 open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode()
        self._open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["path"] in self._open_paths
                or self._authorized(scope)):
            await self.app(scope, receive, send)
            return
        body = json.dumps(error_body(scope["path"], "unauthorized",
                                     "send the API key as `Authorization: Bearer <key>`"))
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body.encode()})

    def _authorized(self, scope: Scope) -> bool:
        given = dict(scope["headers"]).get(b"authorization", b"")
        return hmac.compare_digest(given, self._expected)  # constant time


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes `limit` bytes (a declared
    Content-Length over the limit is refused before anything is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large",
                    f"the request body is over {limit / 2**20:g} MiB (--max-upload-mb)")
