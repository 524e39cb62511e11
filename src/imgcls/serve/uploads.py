"""A /v1/predict body -> (name, bytes) per image: multipart files, or the raw body."""

from __future__ import annotations

from python_multipart.multipart import parse_options_header
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from imgcls.serve.errors import ApiError
from imgcls.serve.security import read_body

RAW_TYPES = ("application/octet-stream",)  # and every image/*
MAX_FIELDS = 16  # non-file parts tolerated beside the images
NAME_CHARS = 200  # of a file name, in answers and errors
HOW = ("send multipart/form-data with one or more file parts, or one image as the body "
       "(Content-Type image/* or application/octet-stream)")


async def read_uploads(request: Request, limit: int, max_images: int
                       ) -> list[tuple[str, bytes]]:
    """The images of a /v1/predict body; 413 for more than `max_images`, before decoding."""
    body = await read_body(request, limit)
    if not body:
        raise ApiError(400, "empty_body", f"the request body is empty; {HOW}")
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        _check_part_count(content_type, body, max_images)
        return await _multipart_files(request, body, limit, max_images)
    if media_type.startswith("image/") or media_type in RAW_TYPES:
        return [("body", body)]
    raise ApiError(415, "unsupported_media_type",
                   f"Content-Type {media_type[:60] or '(none)'} is not accepted; {HOW}")


def _check_part_count(content_type: str, body: bytes, max_images: int) -> None:
    """More parts than images allowed plus a few fields: 413 before parsing them. Every
    part starts with `--boundary` and the boundary may not occur inside a part (RFC 2046),
    so counting it bounds the parts without parsing."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        return  # the parser answers that (400)
    parts = body.count(b"--" + boundary) - 1  # the last delimiter closes the body
    if parts > max_images + MAX_FIELDS:
        raise _too_many(parts, max_images)


async def _multipart_files(request: Request, body: bytes, limit: int,
                           max_images: int) -> list[tuple[str, bytes]]:
    async def replay() -> Message:  # the body is already read (and size-checked)
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(
            max_files=max_images + MAX_FIELDS, max_fields=MAX_FIELDS, max_part_size=limit)
    except (HTTPException, LookupError, ValueError) as error:
        # Starlette's answer to a malformed body; LookupError: an unknown charset.
        detail = error.detail if isinstance(error, HTTPException) else error
        raise ApiError(400, "invalid_multipart", f"malformed multipart body ({detail})"
                       ) from None
    try:
        files = [((item.filename or field)[:NAME_CHARS], await item.read())
                 for field, item in form.multi_items() if isinstance(item, UploadFile)]
    finally:
        await form.close()
    if not files:
        raise ApiError(400, "missing_file", f"the multipart body has no file part; {HOW}")
    if len(files) > max_images:
        raise _too_many(len(files), max_images)
    return files


def _too_many(count: int, max_images: int) -> ApiError:
    return ApiError(413, "too_many_images",
                    f"the request holds {count} parts; at most {max_images} images per "
                    f"request (--max-queue) and {MAX_FIELDS} other fields: split it")
