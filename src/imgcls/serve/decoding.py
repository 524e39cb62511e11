"""Uploaded bytes -> the uint8 [C, H, W] tensor the model takes, or the right 4xx.

The pixels are exactly `imgcls predict`'s: PIL decodes the whole file, then the
Predictor's `to_uint8` (to_uint8_chw) converts channels and size. Only well-known raster
formats are opened: PIL's other plugins (EPS runs Ghostscript, for one) are no business
of an upload.
"""

from __future__ import annotations

import io

import torch
from PIL import Image

from imgcls.predict import Predictor
from imgcls.serve.errors import ApiError

FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")  # JPEG covers MPO (phones)
ACCEPTED = "JPEG, PNG, GIF, BMP, TIFF, WebP or PPM"
# How the accepted formats' files begin; PIL calls such a file "unidentified" when its
# header is cut short, but that is a corrupt image (400), not an unsupported one (415).
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM",
               b"II*\x00", b"MM\x00*", b"RIFF", b"P5", b"P6")
Image.init()  # registers every plugin: Image.open(formats=...) looks only among those


def decode_upload(data: bytes, name: str, predictor: Predictor) -> torch.Tensor:
    """Runs in a worker thread: decoding a phone photo takes tens of milliseconds."""
    image = open_upload(data, name)
    try:
        return predictor.to_uint8(image)
    except Exception as error:  # an odd mode PIL can't convert is the file's fault
        raise ApiError(415, "unsupported_image",
                       f"{name}: cannot convert this image ({_one_line(error)})") from None


def open_upload(data: bytes, name: str) -> Image.Image:
    if not data:
        raise ApiError(400, "empty_image", f"{name} is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            _check_size(image, name)
            image.load()
            return image
    except ApiError:
        raise
    except Image.DecompressionBombError as error:
        raise ApiError(413, "image_too_large", f"{name}: {_one_line(error)}") from None
    except Image.UnidentifiedImageError:
        if data.startswith(_SIGNATURES):  # a known format's start, cut short or damaged
            raise ApiError(400, "corrupt_image", f"{name}: truncated or corrupt image "
                           "(its format's header is unreadable)") from None
        raise ApiError(415, "unsupported_image",
                       f"{name} is not an image in a supported format ({ACCEPTED})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # PIL reports truncation as OSError and a broken PNG chunk as SyntaxError.
        raise ApiError(400, "corrupt_image",
                       f"{name}: truncated or corrupt image ({_one_line(error)})") from None


def _check_size(image: Image.Image, name: str) -> None:
    """Before decoding: a 0x0 header is corrupt; too many pixels is a decompression bomb."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ApiError(400, "corrupt_image", f"{name}: the image is {width}x{height} pixels")
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise ApiError(413, "image_too_large",
                       f"{name}: {width}x{height} pixels is over the limit of {limit} pixels "
                       "(a decompression bomb?); resize it before uploading")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
