"""Big images made small before they are converted, in bands of rows, so that no step holds
a second full-size copy of the decoded pixels (nor a float64 one: 8 bytes per pixel).

Used by `decode.load_budgeted` (prediction and serving) for images over its pixel
threshold, and by `decode.to_uint8_chw` for 16/32-bit and float images of any size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from PIL import Image

BAND_PIXELS = 1 << 20  # pixels per band: float64 temporaries of a band stay near 8 MB
# Modes Image.reduce averages meaningfully, and the mode each is averaged in. 16-bit gray
# has no reduce in PIL; its bands go through 32-bit 'I'. LA and RGBA are premultiplied by
# PIL itself. Palette, bilevel, CMYK and colour-keyed images are converted first.
REDUCE_MODES = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "I": "I", "F": "F",
                "I;16": "I", "I;16L": "I", "I;16B": "I", "I;16N": "I"}


def is_wide(mode: str) -> bool:
    """16/32-bit integer or float gray: no agreed white, scaled by the image's own range."""
    return mode in ("I", "F") or mode.startswith("I;")


def reduce_factor(width_height: tuple[int, int], size: int, gap: int = 2) -> int:
    """The largest integer factor that keeps the shorter side at least `gap` x `size`: the
    bilinear resize after it still has `gap` source pixels per output pixel to average
    (PIL's thumbnail uses the same reducing gap of 2)."""
    return max(1, min(width_height) // (gap * size))


def row_bands(image: Image.Image, multiple: int = 1) -> Iterator[tuple[int, Image.Image]]:
    """(top row, a copy of about BAND_PIXELS pixels of rows) over the whole image; band
    heights are a multiple of `multiple` so that reducing bands equals reducing the image."""
    width, height = image.size
    rows = max(1, BAND_PIXELS // (width * multiple)) * multiple
    for top in range(0, height, rows):
        yield top, image.crop((0, top, width, min(top + rows, height)))


def finite_range(image: Image.Image) -> tuple[float, float] | None:
    """(min(0, lowest), highest) over the finite values of a wide image; None if none is."""
    if image.mode in ("I", "I;16"):  # PIL's own pass: no copy, and twice as fast
        lowest, highest = image.getextrema()
        return min(0.0, float(lowest)), float(highest)
    low, high = math.inf, -math.inf
    for _, band in row_bands(image):
        values = np.asarray(band)
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if values.size:
            low, high = min(low, float(values.min())), max(high, float(values.max()))
    return None if high == -math.inf else (min(0.0, low), high)


def scale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Wide values -> uint8, [low, high] linearly onto 0..255, non-finite values black."""
    values = np.asarray(values, dtype=np.float64)
    values = np.where(np.isfinite(values), values, low)
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.rint((values - low) * scale).clip(0, 255).astype(np.uint8)


def wide_to_luminance(image: Image.Image, factor: int = 1) -> Image.Image:
    """A wide image -> 'L' (scaled by its own range, see decode._wide_to_luminance), reduced
    by `factor`; band by band, so the float64 copy is one band's, not the image's."""
    value_range = finite_range(image)
    if factor > 1:
        image = shrink(image, factor)  # 'I' or 'F', 1/factor^2 of the pixels
    if value_range is None:
        return Image.new("L", image.size, 0)
    out = Image.new("L", image.size)
    for top, band in row_bands(image):
        out.paste(Image.fromarray(scale_to_uint8(np.asarray(band), *value_range)), (0, top))
    return out


def shrink(image: Image.Image, factor: int) -> Image.Image:
    """`image.reduce(factor)` (box averages of factor x factor pixels) computed band by band;
    16-bit gray comes back as 'I'. The image's mode must be in REDUCE_MODES."""
    mode = REDUCE_MODES[image.mode]
    width, height = image.size
    out = Image.new(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    for top, band in row_bands(image, multiple=factor):
        if band.mode != mode:
            band = band.convert(mode)
        out.paste(band.reduce(factor), (0, top // factor))
    return out
