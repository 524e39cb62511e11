"""Image -> uint8 numpy array [C, size, size] with PIL and numpy only: the preprocessing that
decode.py gives training and evaluation as torch tensors, importable without torch. The
Predictor (predict/predictor.py; imgcls predict, imgcls serve) decodes every image with it, so
an .onnx model, run on export/session.py's OnnxRunner, predicts and serves without torch.

The recipe (see decode.py's docstring): EXIF orientation, transparency composited on white,
'L' or 'RGB', the shorter side scaled to `size` (bilinear, antialiased) and the centre cut out,
as torchvision's Resize + CenterCrop. A JPEG much larger than the target is decoded by libjpeg
at reduced scale (PIL's `draft`); one it can't shrink goes to `undrafted_jpeg` when given
(decode.py passes torchvision's decoder, several times faster at 224 px), else through PIL:
the two differ by interpolation rounding only (mean |difference| under 1 level of 255).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

from imgcls.data import shrink
from imgcls.errors import UserError

# Modes whose alpha (or transparent palette entry / colour key) we composite on white.
ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}

# (encoded file or bytes, PIL mode "L" or "RGB", channels, size) -> uint8 [C, size, size],
# or None to leave the JPEG to PIL.
UndraftedJpeg = Callable[[Path | bytes, str, int, int], np.ndarray | None]


class BadImageError(UserError):
    """A file that is not a usable image. A UserError, so a single bad file given to
    `predict` ends as one clear line; `decode_files` catches it and skips the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class DecodeBudget:
    """What one image may cost to decode; prediction and serving pass one, training doesn't.

    `max_pixels`: width x height from the header over this -> ImageTooLarge, before any
    pixel is decoded (None: PIL.Image.MAX_IMAGE_PIXELS, 89 M). `exact_pixels`: images up
    to this many pixels decode exactly as in training; larger ones (not JPEGs: libjpeg
    already decodes those at reduced scale) are box-reduced in bands right after decoding
    (shrink.py), so converting them costs no second full-size copy.
    """

    max_pixels: int | None = None
    # 2048 x 2048: data sets' and web images keep their training pixels; a 24 MP RGBA
    # photo would otherwise cost 5 full-size copies (~480 MB) on its way to 8-bit RGB.
    exact_pixels: int = 1 << 22


class ImageTooLarge(BadImageError):
    """More pixels than the budget allows (or PIL's decompression-bomb limit)."""

    def __init__(self, name: str | Path, width: int, height: int, limit: int) -> None:
        self.width, self.height, self.limit = width, height, limit
        super().__init__(name, f"{width}x{height} pixels ({width * height / 1e6:.1f} M) is "
                               f"over the limit of {limit / 1e6:g} M pixels (a decompression "
                               "bomb?)")


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode one image file, so a truncated file fails here, not later.

    Raises BadImageError for a missing, empty, non-image, truncated or corrupt file, and
    for a decompression bomb (more pixels than PIL.Image.MAX_IMAGE_PIXELS).
    """
    path = existing_file(path)
    # A `with` block closes the file even for multi-frame formats (GIF, TIFF) that PIL
    # would keep open; the first frame, loaded below, stays usable.
    with bad_image_errors(path), Image.open(path) as image:
        reject_bomb(path, image)
        image.load()
        return image


def decode_file(path: str | Path, *, channels: int, size: int,
                budget: DecodeBudget | None = None,
                undrafted_jpeg: UndraftedJpeg | None = None) -> np.ndarray:
    """One image file -> uint8 [channels, size, size]: `to_uint8_array(open_image(path))`,
    faster for JPEGs, and for images over the budget's `exact_pixels`, reduced early.
    Raises BadImageError like open_image."""
    path = existing_file(path)
    with bad_image_errors(path), Image.open(path) as image:
        loaded = load_budgeted(image, path, channels=channels, size=size, budget=budget,
                               undrafted_jpeg=undrafted_jpeg)
        if isinstance(loaded, np.ndarray):
            return loaded
    return to_uint8_array(loaded, channels=channels, size=size)


def load_budgeted(image: Image.Image, source: Path | bytes, *, channels: int, size: int,
                  budget: DecodeBudget | None = None, name: str | None = None,
                  undrafted_jpeg: UndraftedJpeg | None = None) -> Image.Image | np.ndarray:
    """Decode an opened image (`source`: its file or bytes) as cheaply as its use allows:
    the size checked from the header first, JPEGs drafted by libjpeg, big images reduced.
    Returns what to_uint8_array finishes, or the final array (`undrafted_jpeg`'s).
    Raises PIL's own errors for a bad file, BadImageError for a 0x0 or too large one."""
    name = name if name is not None else str(source)
    reject_bomb(name, image, budget.max_pixels if budget else None)
    if image.format == "JPEG" and image.mode in ("L", "RGB"):
        return _decode_jpeg(source, image, channels, size, undrafted_jpeg)
    image.load()
    if budget is not None and image.width * image.height > budget.exact_pixels:
        return _reduce_early(image, size)
    return image


def _reduce_early(image: Image.Image, size: int) -> Image.Image:
    """A big decoded image reduced by an integer factor (keeping at least twice `size`),
    turned upright and 8-bit, without any full-size copy of it."""
    factor = shrink.reduce_factor(image.size, size)
    if factor == 1:
        return image
    orientation = _orientation(image)
    if shrink.is_wide(image.mode):
        reduced = shrink.wide_to_luminance(image, factor)
    else:
        if image.mode not in shrink.REDUCE_MODES or "transparency" in image.info:
            image = _to_8bit_or_alpha(image)  # palette, CMYK, a colour key: a copy first
        reduced = shrink.shrink(image, factor)
    # The reduced image carries no EXIF, so to_uint8_array won't turn it a second time.
    return reduced if orientation is None else reduced.transpose(orientation)


def _orientation(image: Image.Image) -> Image.Transpose | None:
    """The transposition EXIF orientation asks for (as ImageOps.exif_transpose applies)."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a malformed EXIF block costs the orientation, not the image
        return None
    return _TRANSPOSES.get(orientation)


_TRANSPOSES = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
               6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}


def _to_8bit_or_alpha(image: Image.Image) -> Image.Image:
    """A mode shrink can't average -> RGBA when it has transparency (composited on white
    later, after reducing), else RGB ('L' for bilevel and gray ones)."""
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        return image.convert("RGBA")
    return image.convert("L" if image.mode in ("1", "L") else "RGB")


def _decode_jpeg(source: Path | bytes, image: Image.Image, channels: int, size: int,
                 undrafted_jpeg: UndraftedJpeg | None) -> Image.Image | np.ndarray:
    """A JPEG shrunk by libjpeg to the target's resized size (to_uint8_array then only turns
    and crops it), or, where libjpeg can't shrink it, `undrafted_jpeg`'s final array."""
    full_size = image.size
    # libjpeg's smallest 1/2^k scale whose sides stay >= size. `box` is the full image in
    # the scaled pixels: (0, 0, 50.0, 37.5) when 1/4 of 150 rows leaves half a row.
    _, box = image.draft(image.mode, (size, size))
    if image.size == full_size and undrafted_jpeg is not None:
        decoded = undrafted_jpeg(source, image.mode, channels, size)
        if decoded is not None:
            return decoded
    image.load()
    image = image.convert("L" if channels == 1 else "RGB")  # before resizing, as to_uint8_array
    # Resized in the stored orientation, so the fractional `box` is exact; turning an image
    # commutes with scaling it, and to_uint8_array turns it and crops the centre afterwards.
    return image.resize(resized_size(full_size, size), Image.Resampling.BILINEAR, box=box)


def existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise BadImageError(path, "file not found")
    if path.stat().st_size == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    return path


@contextlib.contextmanager
def bad_image_errors(path: Path) -> Iterator[None]:
    """Turn whatever PIL or torchvision raise for an unusable file into BadImageError."""
    try:
        yield
    except BadImageError:
        raise
    except Image.DecompressionBombError as error:
        raise BadImageError(path, f"decompression bomb ({one_line(error)})") from error
    except Image.UnidentifiedImageError as error:
        raise BadImageError(path, "not an image (format not recognized)") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # PIL reports truncation as OSError and a broken PNG chunk as SyntaxError.
        raise BadImageError(path, f"truncated or corrupt image ({one_line(error)})") from error
    except RuntimeError as error:  # torchvision's decoders; their message ends with the cause
        cause = str(error).rsplit(", ", 1)[-1]
        raise BadImageError(path, f"truncated or corrupt image ({one_line(cause)})") from error


def reject_bomb(name: str | Path, image: Image.Image, max_pixels: int | None = None) -> None:
    """From the header, before decoding: a 0x0 image is corrupt; more pixels than
    `max_pixels` (default PIL.Image.MAX_IMAGE_PIXELS) is ImageTooLarge."""
    if image.width < 1 or image.height < 1:
        raise BadImageError(name, f"the image is {image.width}x{image.height} pixels")
    # PIL only warns between 1x and 2x MAX_IMAGE_PIXELS; we refuse from 1x. Turning its
    # warning into an error with warnings.catch_warnings would not be thread-safe.
    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise ImageTooLarge(name, image.width, image.height, limit)


def to_uint8_array(image: Image.Image, *, channels: int, size: int) -> np.ndarray:
    """Any PIL image -> uint8 array [channels, size, size], C-contiguous and writable.

    EXIF orientation is applied; transparency is composited on white; channels=1 gives
    luminance ('L'), channels=3 gives 'RGB' (gray is replicated). An image already
    `size` x `size` is not resampled.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = _apply_orientation(image)
    image = _to_8bit(image, "L" if channels == 1 else "RGB")
    image = _resize_center_crop(image, size)
    array = np.array(image, dtype=np.uint8)  # a writable copy (torch.from_numpy wants one)
    chw = array[np.newaxis] if array.ndim == 2 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(chw)


def _apply_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block costs the orientation, not the image
        return image


def _to_8bit(image: Image.Image, target_mode: str) -> Image.Image:
    mode = image.mode
    if shrink.is_wide(mode):
        image = wide_to_luminance(image)
    elif mode in ALPHA_MODES or "transparency" in image.info:
        image = _composite_on_white(image)
    # What is left (1, L, P, RGB, CMYK, YCbCr, ...) PIL converts directly.
    return image if image.mode == target_mode else image.convert(target_mode)


def wide_to_luminance(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float gray -> 'L', scaled by the image's own range.

    These modes have no agreed white: a 16-bit PNG may hold 12-bit sensor data, a float
    TIFF 0..1 or physical units. PIL's own convert('L') clips at 255 (most of a 16-bit
    image turns white). So the image's range [min(0, lowest), highest] maps linearly onto
    0..255: zero stays black (unless values go negative) and the brightest value is white;
    anchored at zero rather than stretching min..max, so a flat, low-contrast image is
    not blown up into noise. Computed in bands of rows (shrink.wide_to_luminance): the
    same pixels as over the whole image at once, without its float64 copy.
    """
    return shrink.wide_to_luminance(image)


def _composite_on_white(image: Image.Image) -> Image.Image:
    # convert('RGBA') also turns a palette's or a colour key's transparency into alpha.
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision's Resize(size) + CenterCrop(size) on a PIL image, done with PIL directly:
    the same arithmetic, without importing torchvision (over a second) to predict one image."""
    if image.size == (size, size):
        return image
    new_size = resized_size(image.size, size)
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.BILINEAR)  # PIL always antialiases
    left = int(round((new_size[0] - size) / 2.0))
    top = int(round((new_size[1] - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def resized_size(width_height: tuple[int, int], size: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to `size`, as torchvision's Resize."""
    width, height = width_height
    long = int(size * max(width, height) / min(width, height))  # torchvision truncates
    return (size, long) if width <= height else (long, size)


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
