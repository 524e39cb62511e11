"""Image file -> uint8 tensor [C, size, size]: the one preprocessing path.

Training, evaluation and prediction all go through `to_uint8_chw`, so a model sees the
same pixels in deployment as it saw in training.

Resizing follows torchvision's `Resize(size)` + `CenterCrop(size)` convention (the
ImageNet evaluation recipe): the shorter side is scaled to `size` (bilinear, antialiased),
keeping the aspect ratio, then the central `size` x `size` square is cut out. So nothing is
stretched, and the borders of the longer side are dropped.

Many files (`decode_files`, streaming) go through `decode_file`, which gets the same pixels
faster: a JPEG much larger than the target is decoded by libjpeg at 1/2, 1/4 or 1/8 scale
(PIL's `draft`, never below the target size), and one it can't shrink is decoded and resized
by torchvision (several times faster than PIL at 224 px). Both differ from `to_uint8_chw`
only by interpolation rounding (mean |difference| under 1 level of 255).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from imgcls.data import shrink
from imgcls.errors import UserError

# Modes whose alpha (or transparent palette entry / colour key) we composite on white.
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
# How many files each round of the thread pool decodes: bounds memory held by finished
# results that wait for an earlier, slower file.
_CHUNK_PER_WORKER = 16
_PROCESS_MIN_FILES = 2000  # from this many files, worker processes beat threads
_PROCESS_BATCH = 64  # files per worker task
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
    path = _existing_file(path)
    # A `with` block closes the file even for multi-frame formats (GIF, TIFF) that PIL
    # would keep open; the first frame, loaded below, stays usable.
    with _bad_image_errors(path), Image.open(path) as image:
        _reject_bomb(path, image)
        image.load()
        return image


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


def decode_file(path: str | Path, *, channels: int, size: int,
                budget: DecodeBudget | None = None) -> torch.Tensor:
    """One image file -> uint8 [channels, size, size]: `to_uint8_chw(open_image(path))`,
    faster for JPEGs (see the module docstring), and for images over the budget's
    `exact_pixels`, reduced early. Raises BadImageError like open_image."""
    path = _existing_file(path)
    with _bad_image_errors(path), Image.open(path) as image:
        loaded = load_budgeted(image, path, channels=channels, size=size, budget=budget)
        if isinstance(loaded, torch.Tensor):
            return loaded
    return to_uint8_chw(loaded, channels=channels, size=size)


def load_budgeted(image: Image.Image, source: Path | bytes, *, channels: int, size: int,
                  budget: DecodeBudget | None = None, name: str | None = None
                  ) -> Image.Image | torch.Tensor:
    """Decode an opened image (`source`: its file or bytes) as cheaply as its use allows:
    the size checked from the header first, JPEGs drafted by libjpeg, big images reduced.
    Returns what to_uint8_chw finishes, or the final tensor (torchvision's JPEG path).
    Raises PIL's own errors for a bad file, BadImageError for a 0x0 or too large one."""
    name = name if name is not None else str(source)
    _reject_bomb(name, image, budget.max_pixels if budget else None)
    if image.format == "JPEG" and image.mode in ("L", "RGB"):
        return _decode_jpeg(source, image, channels, size)
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
    # The reduced image carries no EXIF, so to_uint8_chw won't turn it a second time.
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
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return image.convert("RGBA")
    return image.convert("L" if image.mode in ("1", "L") else "RGB")


def _decode_jpeg(
    source: Path | bytes, image: Image.Image, channels: int, size: int
) -> Image.Image | torch.Tensor:
    """A JPEG shrunk by libjpeg to the target's resized size (to_uint8_chw then only turns
    and crops it), or, where libjpeg can't shrink it, the final tensor from torchvision."""
    full_size = image.size
    # libjpeg's smallest 1/2^k scale whose sides stay >= size. `box` is the full image in
    # the scaled pixels: (0, 0, 50.0, 37.5) when 1/4 of 150 rows leaves half a row.
    _, box = image.draft(image.mode, (size, size))
    if image.size == full_size and _has_torchvision_jpeg():  # torchvision is faster then
        return _decode_jpeg_torch(source, image.mode, channels, size)
    image.load()
    image = image.convert("L" if channels == 1 else "RGB")  # before resizing, as to_uint8_chw
    # Resized in the stored orientation, so the fractional `box` is exact; turning an image
    # commutes with scaling it, and to_uint8_chw turns it and crops the centre afterwards.
    return image.resize(_resized_size(full_size, size), Image.Resampling.BILINEAR, box=box)


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise BadImageError(path, "file not found")
    if path.stat().st_size == 0:
        raise BadImageError(path, "empty file (0 bytes)")
    return path


@contextlib.contextmanager
def _bad_image_errors(path: Path) -> Iterator[None]:
    """Turn whatever PIL or torchvision raise for an unusable file into BadImageError."""
    try:
        yield
    except BadImageError:
        raise
    except Image.DecompressionBombError as error:
        raise BadImageError(path, f"decompression bomb ({_one_line(error)})") from error
    except Image.UnidentifiedImageError as error:
        raise BadImageError(path, "not an image (format not recognized)") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # PIL reports truncation as OSError and a broken PNG chunk as SyntaxError.
        raise BadImageError(path, f"truncated or corrupt image ({_one_line(error)})") from error
    except RuntimeError as error:  # torchvision's decoders; their message ends with the cause
        cause = str(error).rsplit(", ", 1)[-1]
        raise BadImageError(path, f"truncated or corrupt image ({_one_line(cause)})") from error


def _decode_jpeg_torch(source: Path | bytes, file_mode: str, channels: int,
                       size: int) -> torch.Tensor:
    decode_jpeg, read_modes, functional = _torchvision_image_ops()
    encoded = (np.frombuffer(bytearray(source), dtype=np.uint8) if isinstance(source, bytes)
               else np.fromfile(source, dtype=np.uint8))  # bytearray: torch wants it writable
    data = torch.from_numpy(encoded)
    image = decode_jpeg(data, mode=read_modes[file_mode], apply_exif_orientation=True)
    # RGB -> gray with PIL's formula (libjpeg's own gray output is its Y plane, slightly
    # different); gray -> RGB replicates. Before resizing, as to_uint8_chw converts first.
    image = _match_channels(image.unsqueeze(0), channels)[0]
    if image.shape[-2:] != (size, size):
        image = functional.resize(image, [size], antialias=True)
        image = functional.center_crop(image, [size, size])
    return image.contiguous()


@functools.cache
def _torchvision_image_ops() -> tuple[Any, dict[str, Any], Any]:
    """(decode_jpeg, {PIL mode: ImageReadMode}, transforms.v2.functional), imported on first
    use: torchvision takes over a second to import, too long for predicting one image."""
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import functional

    # torchvision 0.29 deprecates its image decoders in favour of TorchCodec and warns on
    # every call; they still work, and decode_file falls back to PIL once they are gone.
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities",
                            category=DeprecationWarning)
    return decode_jpeg, {"L": ImageReadMode.GRAY, "RGB": ImageReadMode.RGB}, functional


def _has_torchvision_jpeg() -> bool:
    try:
        _torchvision_image_ops()
    except ImportError:
        return False
    return True


def _reject_bomb(name: str | Path, image: Image.Image, max_pixels: int | None = None) -> None:
    """From the header, before decoding: a 0x0 image is corrupt; more pixels than
    `max_pixels` (default PIL.Image.MAX_IMAGE_PIXELS) is ImageTooLarge."""
    if image.width < 1 or image.height < 1:
        raise BadImageError(name, f"the image is {image.width}x{image.height} pixels")
    # PIL only warns between 1x and 2x MAX_IMAGE_PIXELS; we refuse from 1x. Turning its
    # warning into an error with warnings.catch_warnings would not be thread-safe.
    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise ImageTooLarge(name, image.width, image.height, limit)


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
    if shrink.is_wide(mode):
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
    new_size = _resized_size(image.size, size)
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.BILINEAR)  # PIL always antialiases
    left = int(round((new_size[0] - size) / 2.0))
    top = int(round((new_size[1] - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _resized_size(width_height: tuple[int, int], size: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to `size`, as torchvision's Resize."""
    width, height = width_height
    long = int(size * max(width, height) / min(width, height))  # torchvision truncates
    return (size, long) if width <= height else (long, size)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def decode_files(
    paths: Sequence[Path], *, channels: int, size: int, progress: bool = False
) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """Decode many files with `decode_file` in a thread pool (PIL and torch release the GIL
    while decoding and resizing).

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
    if len(paths) >= _PROCESS_MIN_FILES and workers > 1:
        yield from _decode_in_processes(paths, channels, size, workers)
        return
    # Few files: threads, which start at once (worker processes take ~1 s to spawn).
    chunk = workers * _CHUNK_PER_WORKER
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), chunk):
            batch = paths[start : start + chunk]
            yield from pool.map(
                lambda path: try_decode_file(path, channels=channels, size=size), batch
            )


def _decode_in_processes(
    paths: Sequence[Path], channels: int, size: int, workers: int
) -> Iterator[torch.Tensor | str]:
    """In order, one result per path, decoded by DataLoader worker processes. Measured on a
    quiet 2-core machine, 10,000 JPEGs to 64 px: 1,960 images/s with 2 processes against
    1,540 with 2 threads (PIL's Python-level work holds the GIL; a DataLoader worker also
    runs torch single-threaded, so resizes don't oversubscribe the cores)."""
    loader = DataLoader(DecodeAttempts(paths, channels=channels, size=size),
                        batch_size=_PROCESS_BATCH, num_workers=workers,
                        collate_fn=collate_attempts)
    for images, kept, bad in loader:
        results: dict[int, torch.Tensor | str] = dict(bad)
        if images is not None:
            results.update(zip(kept.tolist(), images, strict=True))
        yield from (results[index] for index in sorted(results))


class DecodeAttempts(Dataset):
    """Files as a Dataset: item i -> (i, `try_decode_file`'s image or reason); never raises,
    so one bad file can't stop a DataLoader."""

    def __init__(self, paths: Sequence[Path], *, channels: int, size: int) -> None:
        self.paths = list(paths)
        self.channels = channels
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | str]:
        return index, try_decode_file(self.paths[index], channels=self.channels, size=self.size)


# (images [B, C, H, W], or None when no file in the batch decoded; their indices, int64 [B];
#  (index, reason) per file that failed)
CollatedAttempts = tuple[torch.Tensor | None, torch.Tensor, list[tuple[int, str]]]


def collate_attempts(attempts: list[tuple[int, torch.Tensor | str]]) -> CollatedAttempts:
    """DataLoader collate_fn for DecodeAttempts: one stacked tensor of the good images."""
    good = [(index, image) for index, image in attempts if isinstance(image, torch.Tensor)]
    bad = [(index, reason) for index, reason in attempts if isinstance(reason, str)]
    images = torch.stack([image for _, image in good]) if good else None
    return images, torch.tensor([index for index, _ in good], dtype=torch.int64), bad


def try_decode_file(path: str | Path, *, channels: int, size: int) -> torch.Tensor | str:
    """`decode_file`'s tensor, or the reason this file can't be used; never raises."""
    try:
        return decode_file(path, channels=channels, size=size)
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
