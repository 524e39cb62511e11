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

The PIL and numpy part lives in pixels.py, importable without torch (an ONNX model predicts
and serves without torch); this module adds torch tensors, torchvision's JPEG path and the
many-file decoders.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from imgcls.data import pixels
from imgcls.data.pixels import (  # the torch-free part; imported from here as before
    BadImageError,
    DecodeBudget,
    ImageTooLarge,
    one_line,
    open_image,
    to_uint8_array,
)
from imgcls.data.pixels import wide_to_luminance as _wide_to_luminance  # noqa: F401 (tests)
from imgcls.utils.cpus import usable_cpus

__all__ = ["BadImageError", "DecodeBudget", "ImageTooLarge", "decode_arrays", "decode_file",
           "decode_files", "load_budgeted", "open_image", "to_uint8_chw", "torchvision_jpeg",
           "try_decode_file"]
# How many files each round of the thread pool decodes: bounds memory held by finished
# results that wait for an earlier, slower file.
_CHUNK_PER_WORKER = 16
_PROCESS_MIN_FILES = 2000  # from this many files, worker processes beat threads
_PROCESS_BATCH = 64  # files per worker task
_ARRAY_CHUNK = 2048  # in-memory images resized per thread-pool task


def decode_file(path: str | Path, *, channels: int, size: int,
                budget: DecodeBudget | None = None) -> torch.Tensor:
    """One image file -> uint8 [channels, size, size]: `to_uint8_chw(open_image(path))`,
    faster for JPEGs (see the module docstring), and for images over the budget's
    `exact_pixels`, reduced early. Raises BadImageError like open_image."""
    return torch.from_numpy(pixels.decode_file(path, channels=channels, size=size,
                                               budget=budget, undrafted_jpeg=torchvision_jpeg))


def load_budgeted(image: Image.Image, source: Path | bytes, *, channels: int, size: int,
                  budget: DecodeBudget | None = None, name: str | None = None
                  ) -> Image.Image | np.ndarray:
    """pixels.load_budgeted with torchvision's decoder for JPEGs libjpeg can't shrink:
    the image for to_uint8_chw to finish, or the final uint8 array [C, size, size]."""
    return pixels.load_budgeted(image, source, channels=channels, size=size, budget=budget,
                                name=name, undrafted_jpeg=torchvision_jpeg)


def to_uint8_chw(image: Image.Image, *, channels: int, size: int) -> torch.Tensor:
    """Any PIL image -> uint8 tensor [channels, size, size] (pixels.to_uint8_array's).

    EXIF orientation is applied; transparency is composited on white; channels=1 gives
    luminance ('L'), channels=3 gives 'RGB' (gray is replicated). See the module docstring
    for resizing; an image already `size` x `size` is not resampled.
    """
    return torch.from_numpy(to_uint8_array(image, channels=channels, size=size))


def torchvision_jpeg(source: Path | bytes, file_mode: str, channels: int,
                     size: int) -> np.ndarray | None:
    """A JPEG libjpeg can't shrink, decoded and resized by torchvision (several times
    faster than PIL at 224 px); None where torchvision is not installed (PIL does it)."""
    if not _has_torchvision_jpeg():
        return None
    return _decode_jpeg_torch(source, file_mode, channels, size).numpy()


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
    workers = usable_cpus()
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
        return f"cannot convert ({type(error).__name__}: {one_line(error)})"


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
    with ThreadPoolExecutor(max_workers=usable_cpus()) as pool:
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
