"""A /v1/predict body -> (name, bytes) per image: multipart files, or the raw body."""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from imgcls.serve.errors import ApiError
from imgcls.serve.security import read_body

RAW_TYPES = ("application/octet-stream",)  # and every image/*
HOW = ("send multipart/form-data with one or more file parts, or one image as the body "
       "(Content-Type image/* or application/octet-stream)")


async def read_uploads(request: Request, limit: int, max_files: int) -> list[tuple[str, bytes]]:
    body = await read_body(request, limit)
    if not body:
        raise ApiError(400, "empty_body", f"the request body is empty; {HOW}")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        return await _multipart_files(request, body, limit, max_files)
    if media_type.startswith("image/") or media_type in RAW_TYPES:
        return [("body", body)]
    raise ApiError(415, "unsupported_media_type",
                   f"Content-Type {media_type or '(none)'} is not accepted; {HOW}")


async def _multipart_files(request: Request, body: bytes, limit: int,
                           max_files: int) -> list[tuple[str, bytes]]:
    async def replay() -> Message:  # the body is already read (and size-checked)
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(
            max_files=max_files, max_fields=100, max_part_size=limit)
    except HTTPException as error:  # Starlette's answer to a malformed multipart body
        raise ApiError(400, "invalid_multipart", f"malformed multipart body ({error.detail})"
                       ) from None
    files = [(item.filename or field, await item.read())
             for field, item in form.multi_items() if isinstance(item, UploadFile)]
    await form.close()
    if not files:
        raise ApiError(400, "missing_file", f"the multipart body has no file part; {HOW}")
    return files
