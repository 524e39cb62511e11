"""Every error the service answers is JSON `{"error": {"code", "message"}}` with a 4xx or
5xx status: bad input maps to a 4xx here, never to a bare 500.

Under /v2/ (the Open Inference Protocol) the protocol's own shape wins: `{"error":
"<message>", "code": "<code>"}`; Triton's and KServe's clients read `error` as a string
(tritonclient fails to even print the error otherwise)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

_log = logging.getLogger("imgcls.serve")
_HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type"}


class ApiError(Exception):
    """An answer other than 200: raised anywhere below a route, turned into JSON here."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_body(path: str, code: str, message: str) -> dict[str, Any]:
    if path.startswith("/v2/") or path == "/v2":
        return {"error": message, "code": code}
    return {"error": {"code": code, "message": message}}


def error_response(request: Request, status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, code, message), status_code=status,
                        headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(request, error.status, error.code, error.message, error.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, f"http_{error.status_code}")
        return error_response(request, error.status_code, code, str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        return error_response(request, 400, "invalid_request", problems or "invalid request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # A fault of the server, not of the request: logged with its traceback.
        _log.exception("unexpected error")
        return error_response(request, 500, "internal", f"internal error ({type(error).__name__})")
