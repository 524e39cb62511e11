"""Image file -> uint8 tensor [C, size, size]: the one preprocessing path.

Training, evaluation and prediction all go through `to_uint8_chw`, so a model sees the
same pixels in deployment as it saw in training.

Resizing follows torchvision's `Resize(size)` + `CenterCrop(size)` convention (the
ImageNet evaluation recipe): the shorter side is scaled to `size` (bilinear, antialiased),
keeping the aspect ratio, then the central `size` x `size` square is cut out. So nothing is
stretched, and the borders of the longer side are dropped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from imgcls.errors import UserError

# Modes whose alpha (or transparent palette entry / colour key) we composite on white.
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
# How many files each round of the thread pool decodes: bounds memory held by finished
# results that wait for an earlier, slower file.
_CHUNK_PER_WORKER = 16
_ARRAY_CHUNK = 2048  # in-memory images resized per thread-pool task


class BadImageError(UserError):
    """A file that is not a usable image. A UserError, so a single bad file given to
    `predict` ends as one clear line; `decode_files` catches it and skips the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode one image file, so a truncated file fails here, not later.

    Raises BadImageError for a missing, empty, non-image, truncated or corrupt file, and
    for a decompression bomb (more pixels than PIL.Image.MAX_IMAGE_PIXELS).
    """
    path = Path(path)
    if not path.is_file():
        raise BadImageError(path, "file not found")
    if path.stat().st_size == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    try:
        # A `with` block closes the file even for multi-frame formats (GIF, TIFF) that PIL
        # would keep open; the first frame, loaded below, stays usable.
        with Image.open(path) as image:
            _reject_bomb(path, image)
            image.load()
            return image
    except BadImageError:
        raise
    except Image.DecompressionBombError as error:
        raise BadImageError(path, f"decompression bomb ({_one_line(error)})") from error
    except Image.UnidentifiedImageError as error:
        raise BadImageError(path, "not an image (format not recognized)") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # PIL reports truncation as OSError and a broken PNG chunk as SyntaxError.
        raise BadImageError(path, f"truncated or corrupt image ({_one_line(error)})") from error


def _reject_bomb(path: Path, image: Image.Image) -> None:
    # PIL only warns between 1x and 2x MAX_IMAGE_PIXELS; we refuse from 1x. Turning its
    # warning into an error with warnings.catch_warnings would not be thread-safe.
    limit = Image.MAX_IMAGE_PIXELS
    pixels = image.width * image.height
    if limit is not None and pixels > limit:
        raise BadImageError(
            path, f"decompression bomb ({pixels} pixels > PIL.Image.MAX_IMAGE_PIXELS={limit})"
        )


def to_uint8_chw(image: Image.Image, *, channels: int, size: int) -> torch.Tensor:
    """Any PIL image -> uint8 tensor [channels, size, size].

    EXIF orientation is applied; transparency is composited on white; channels=1 gives
    luminance ('L'), channels=3 gives 'RGB' (gray is replicated). See the module docstring
    for resizing; an image already `size` x `size` is not resampled.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = _apply_orientation(image)
    image = _to_8bit(image, "L" if channels == 1 else "RGB")
    image = _resize_center_crop(image, size)
    array = np.array(image, dtype=np.uint8)  # a writable copy for torch
    chw = array[np.newaxis] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(chw))


def _apply_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block costs the orientation, not the image
        return image


def _to_8bit(image: Image.Image, target_mode: str) -> Image.Image:
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;"):
        image = _wide_to_luminance(image)
    elif mode in _ALPHA_MODES or "transparency" in image.info:
        image = _composite_on_white(image)
    # What is left (1, L, P, RGB, CMYK, YCbCr, ...) PIL converts directly.
    return image if image.mode == target_mode else image.convert(target_mode)


def _wide_to_luminance(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float gray -> 'L', scaled by the image's own range.

    These modes have no agreed white: a 16-bit PNG may hold 12-bit sensor data, a float
    TIFF 0..1 or physical units. PIL's own convert('L') clips at 255 (most of a 16-bit
    image turns white). So the image's range [min(0, lowest), highest] maps linearly onto
    0..255: zero stays black (unless values go negative) and the brightest value is white;
    anchored at zero rather than stretching min..max, so a flat, low-contrast image is
    not blown up into noise.
    """
    values = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return Image.new("L", image.size, 0)
    low = min(0.0, float(values[finite].min()))
    high = float(values[finite].max())
    values = np.where(finite, values, low)
    scale = 255.0 / (high - low) if high > low else 0.0
    scaled = np.rint((values - low) * scale).clip(0, 255).astype(np.uint8)
    return Image.fromarray(scaled)  # 2-D uint8 -> mode L


def _composite_on_white(image: Image.Image) -> Image.Image:
    # convert('RGBA') also turns a palette's or a colour key's transparency into alpha.
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """torchvision's Resize(size) + CenterCrop(size) on a PIL image, done with PIL directly:
    the same arithmetic, without importing torchvision (over a second) to predict one image."""
    width, height = image.size
    if (width, height) == (size, size):
        return image
    short, long = min(width, height), max(width, height)
    long = int(size * long / short)  # torchvision truncates the longer side
    new_size = (size, long) if width <= height else (long, size)
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.BILINEAR)  # PIL always antialiases
    left = int(round((new_size[0] - size) / 2.0))
    top = int(round((new_size[1] - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def decode_files(
    paths: Sequence[Path], *, channels: int, size: int, progress: bool = False
) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """Decode many files in a thread pool (PIL releases the GIL while decoding and resizing).

    Returns uint8 [N_ok, channels, size, size] in the order of `paths`, the indices into
    `paths` of the files that decoded, and (path, reason) for each file skipped. A bad
    file never raises.
    """
    images = torch.empty((len(paths), channels, size, size), dtype=torch.uint8)
    decoded: list[int] = []
    skipped: list[tuple[str, str]] = []
    for index, result in enumerate(_decode_all(paths, channels, size)):
        if isinstance(result, str):
            skipped.append((str(paths[index]), result))
        else:
            images[len(decoded)] = result
            decoded.append(index)
        if progress and ((index + 1) % 500 == 0 or index + 1 == len(paths)):
            print(f"\rdecoded {index + 1}/{len(paths)} images", end="", file=sys.stderr)
    if progress and paths:
        print(file=sys.stderr)
    # Only when files were skipped: a clone, so the unused rows' memory is released.
    return (images if not skipped else images[: len(decoded)].clone()), decoded, skipped


def _decode_all(
    paths: Sequence[Path], channels: int, size: int
) -> Iterator[torch.Tensor | str]:
    workers = _usable_cpus()
    chunk = workers * _CHUNK_PER_WORKER
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), chunk):
            batch = paths[start : start + chunk]
            yield from pool.map(lambda p: _decode_one(p, channels, size), batch)


def _decode_one(path: Path, channels: int, size: int) -> torch.Tensor | str:
    """The tensor, or the reason this file can't be used."""
    try:
        return to_uint8_chw(open_image(path), channels=channels, size=size)
    except BadImageError as error:
        return error.reason
    except Exception as error:  # one odd file (e.g. an unconvertible mode) must not stop the rest
        return f"cannot convert ({type(error).__name__}: {_one_line(error)})"


def decode_arrays(arrays: np.ndarray, *, channels: int, size: int) -> torch.Tensor:
    """In-memory uint8 images [N, H, W] (gray) or [N, H, W, 3] -> uint8 [N, channels, size, size].

    For built-in data sets. When only the channel count changes, no image is resampled;
    otherwise each goes through `to_uint8_chw`, like a file would.
    """
    if arrays.shape[1] == arrays.shape[2] == size:
        tensor = torch.from_numpy(np.ascontiguousarray(arrays))
        tensor = tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)
        return _match_channels(tensor.contiguous(), channels)
    out = torch.empty((len(arrays), channels, size, size), dtype=torch.uint8)

    def fill(start: int) -> None:
        for i in range(start, min(start + _ARRAY_CHUNK, len(arrays))):
            out[i] = to_uint8_chw(Image.fromarray(arrays[i]), channels=channels, size=size)

    # Chunks, not one task per image: for 28 px images the pool's per-task cost is larger
    # than the resize itself.
    with ThreadPoolExecutor(max_workers=_usable_cpus()) as pool:
        list(pool.map(fill, range(0, len(arrays), _ARRAY_CHUNK)))
    return out


def _match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    if images.shape[1] == channels:
        return images
    if channels == 3:  # gray -> RGB: replicate
        return images.expand(-1, 3, -1, -1).contiguous()
    # RGB -> gray: PIL's convert('L') integer formula (ITU-R 601 luma), so the result is
    # bit-identical to decoding the same pixels from a file.
    weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
    luma = (images.to(torch.int32) * weights).sum(1, keepdim=True) + 0x8000
    return (luma >> 16).to(torch.uint8)


def _usable_cpus() -> int:
    # process_cpu_count (3.13+) honours CPU affinity; cpu_count may report the whole host.
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return max(1, count or 1)
