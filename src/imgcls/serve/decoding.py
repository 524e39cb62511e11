"""Uploaded bytes -> the uint8 [C, H, W] array the model takes, or the right 4xx; within a
memory budget.

The pixels are exactly `imgcls predict`'s: both go through `pixels.load_budgeted` (JPEGs
drafted by libjpeg, images over 4 M pixels reduced early, the same JPEG decoder for the rest)
and `to_uint8_array`. Numpy throughout: an ONNX service imports no torch. Only
well-known raster formats are opened: PIL's other plugins (EPS runs Ghostscript, for one)
are no business of an upload.

Memory. The pixel count is checked from the header, before decoding (`--max-pixels`, 413
beyond it). Decoding then holds at most one full-size image: 4 bytes a pixel for RGB(A)
PNG/TIFF/WebP (PIL keeps RGB as RGBX), 2 for 16-bit gray, 1 for 8-bit gray; a JPEG is
decoded by libjpeg at 1/2..1/8 scale when the model's input allows. Converting it costs a
few MB more (shrink.py works in bands of rows). At most `threads` images decode at a time
(UploadDecoder's semaphore), so decoding adds at most about
`threads x 4 B x max_pixels` (2 x 4 x 40 M = 320 MB at the defaults with 2 threads) to the
server's memory, besides the request bodies themselves (`--max-upload-mb` each). A decode
abandoned at --timeout-s keeps running in its thread and is not counted any more.
"""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from starlette.requests import Request

from imgcls.data.pixels import BadImageError, DecodeBudget, ImageTooLarge, load_budgeted
from imgcls.serve.errors import ApiError
from imgcls.utils.cpus import usable_cpus

if TYPE_CHECKING:  # service.py imports this module
    from imgcls.predict.predictor import Predictor
    from imgcls.serve.service import Service

FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")  # JPEG covers MPO (phones)
ACCEPTED = "JPEG, PNG, GIF, BMP, TIFF, WebP or PPM"
# How the accepted formats' files begin; PIL calls such a file "unidentified" when its
# header is cut short, but that is a corrupt image (400), not an unsupported one (415).
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM",
               b"II*\x00", b"MM\x00*", b"RIFF", b"P5", b"P6")
Image.init()  # registers every plugin: Image.open(formats=...) looks only among those


class UploadDecoder:
    """At most `slots` requests decode at a time, each one image after another: every
    decode may hold a full-size image, so the number running at once bounds the memory.
    Sets the service's Predictor's budget, so `Service.decode` (threads, timeout) applies
    the pixel cap."""

    def __init__(self, service: Service, max_pixels: int | None, slots: int) -> None:
        self.service = service
        self.budget = service.predictor.budget = DecodeBudget(max_pixels=max_pixels)
        self.slots = slots
        self._running = asyncio.Semaphore(slots)  # bound to the loop on first use

    async def decode(self, uploads: list[tuple[str, bytes]]) -> list[np.ndarray]:
        async with self._running:
            return await self.service.decode(uploads)


def app_decoder(request: Request) -> UploadDecoder:
    """The application's UploadDecoder, made on first use from its service's settings."""
    state = request.app.state
    decoder = getattr(state, "decoder", None)
    if decoder is None:  # no await in between: two requests cannot both make one
        settings = state.service.settings
        decoder = state.decoder = UploadDecoder(state.service, settings.max_pixels,
                                                settings.threads or usable_cpus())
    return decoder


def decode_upload(data: bytes, name: str, predictor: Predictor,
                  budget: DecodeBudget | None = None) -> np.ndarray:
    """Runs in a worker thread: decoding a phone photo takes tens of milliseconds. The
    budget is the Predictor's unless given."""
    loaded = _load(data, name, predictor, budget or predictor.budget)
    if isinstance(loaded, np.ndarray):
        return loaded
    try:
        return predictor.pixels(loaded)
    except Exception as error:  # an odd mode PIL can't convert is the file's fault
        raise ApiError(415, "unsupported_image",
                       f"{name}: cannot convert this image ({_one_line(error)})") from None


def _load(data: bytes, name: str, predictor: Predictor,
          budget: DecodeBudget) -> Image.Image | np.ndarray:
    if not data:
        raise ApiError(400, "empty_image", f"{name} is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            return load_budgeted(image, data, channels=predictor.channels,
                                 size=predictor.image_size, budget=budget, name=name,
                                 undrafted_jpeg=predictor.undrafted_jpeg)
    except ImageTooLarge as error:
        raise ApiError(413, "image_too_large",
                       f"{name}: {error.width}x{error.height} pixels is over the limit of "
                       f"{error.limit} pixels (--max-pixels); downscale it before "
                       "uploading") from None
    except Image.DecompressionBombError as error:  # PIL's own, at 2x MAX_IMAGE_PIXELS
        raise ApiError(413, "image_too_large", f"{name}: {_one_line(error)}") from None
    except BadImageError as error:  # a 0x0 header
        raise ApiError(400, "corrupt_image", f"{name}: {error.reason}") from None
    except Image.UnidentifiedImageError:
        if data.startswith(_SIGNATURES):  # a known format's start, cut short or damaged
            raise ApiError(400, "corrupt_image", f"{name}: truncated or corrupt image "
                           "(its format's header is unreadable)") from None
        raise ApiError(415, "unsupported_image",
                       f"{name} is not an image in a supported format ({ACCEPTED})") from None
    except (OSError, SyntaxError, ValueError, EOFError, RuntimeError) as error:
        # PIL reports truncation as OSError and a broken PNG chunk as SyntaxError;
        # torchvision's JPEG decoder raises RuntimeError.
        raise ApiError(400, "corrupt_image",
                       f"{name}: truncated or corrupt image ({_one_line(error)})") from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
