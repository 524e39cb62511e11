"""`--data` -> ImageSet: a built-in name, a folder of class subfolders, or a CSV.

Built-in names win over a file or folder of the same name in the working directory;
write ./digits to mean the folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from imgcls.data.builtin import NATIVE_FORMATS, builtin_name, load_builtin
from imgcls.data.cache import load_cached, source_key, store
from imgcls.data.decode import decode_files
from imgcls.data.file_index import FileIndex, index_csv, index_folder, sniff_format
from imgcls.data.imageset import ImageSet
from imgcls.data.stream import (
    StreamingImageSet,
    decoded_bytes,
    default_cache_limit,
    streaming_set,
)
from imgcls.errors import UserError

__all__ = ["ImageSet", "StreamingImageSet", "load_source", "native_format"]

ACCEPTED_FORMS = (
    "pass a folder of class subfolders (DIR/<class>/<image>, optionally under train/ val/ "
    "test/), a CSV file with columns path,label[,split], or a built-in name: "
    + ", ".join(NATIVE_FORMATS)
)
_PROGRESS_MIN_FILES = 2000  # below this, decoding is quick enough to need no progress line


def load_source(
    data: str,
    *,
    channels: int | None = None,
    image_size: int | None = None,
    data_dir: str | None = None,
    cache: bool = True,
    cache_limit: int | None = None,
) -> ImageSet | StreamingImageSet:
    """Load a whole data set into memory as uint8 [N, C, size, size].

    `channels` (1 or 3) and `image_size` override the source's defaults (see native_format).
    `data_dir` is where built-in sets are looked for (and downloaded to); folders and CSVs
    ignore it. Raises UserError for a source that can't be used; bad image files are
    skipped and listed in ImageSet.skipped.

    Folders and CSVs only: with `cache`, the decoded images are kept on disk (see
    data/cache.py) and a later load of the same unchanged files memory-maps them instead of
    decoding. When they would take more than `cache_limit` bytes decoded (default: a
    quarter of RAM), nothing is decoded up front: the result is a StreamingImageSet that
    decodes batch by batch (see data/stream.py).
    """
    _check_format(channels, image_size)
    name = builtin_name(data)
    if name is not None:
        native_channels, native_size = NATIVE_FORMATS[name]
        return load_builtin(name, channels=channels or native_channels,
                            size=image_size or native_size, data_dir=data_dir)
    index = _index_files(data)
    if channels is None or image_size is None:
        sniffed_channels, sniffed_size = sniff_format(index.paths)
        channels, image_size = channels or sniffed_channels, image_size or sniffed_size
    return _load_files(index, channels, image_size, cache=cache, cache_limit=cache_limit)


def native_format(data: str, data_dir: str | None = None) -> tuple[int, int]:
    """(channels, size) the source decodes at by default, without decoding any pixels.

    Built-in sets: their stored format (digits upscaled to 32). Folders and CSVs: 1 channel
    if every sampled image is grayscale, else 3; size = median shorter side in [28, 224].
    """
    name = builtin_name(data)
    if name is not None:
        return NATIVE_FORMATS[name]
    return sniff_format(_index_files(data).paths)


def _check_format(channels: int | None, image_size: int | None) -> None:
    if channels not in (None, 1, 3):
        raise UserError(f"channels={channels!r} is not supported; use 1 (gray) or 3 (RGB)")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise UserError(f"image size {image_size!r} is not a positive integer; "
                        f"use e.g. 28, 32 or 224")


def _index_files(data: str) -> FileIndex:
    path = Path(data).expanduser()
    if not data.strip() or not path.exists():
        raise UserError(f"data source {data!r} is not an existing folder or file, nor a "
                        f"built-in name; {ACCEPTED_FORMS}")
    path = path.resolve()
    if path.is_dir():
        return index_folder(path)
    if path.suffix.lower() == ".csv":
        return index_csv(path)
    raise UserError(f"data source {str(path)!r} is a file but not a .csv; {ACCEPTED_FORMS}")


def _load_files(
    index: FileIndex, channels: int, size: int, *, cache: bool, cache_limit: int | None
) -> ImageSet | StreamingImageSet:
    image_set = _load_index(index, channels, size, cache=cache, cache_limit=cache_limit)
    image_set.skipped[:0] = [pair for pair in index.left_out if pair not in image_set.skipped]
    return image_set


def _load_index(
    index: FileIndex, channels: int, size: int, *, cache: bool, cache_limit: int | None
) -> ImageSet | StreamingImageSet:
    limit = default_cache_limit() if cache_limit is None else cache_limit
    if decoded_bytes(len(index.paths), channels, size) > limit:
        return streaming_set(index, channels=channels, size=size)
    if not cache:
        return _decode_index(index, channels, size)
    key = source_key(index, channels, size)
    cached = load_cached(key, source=index.source)
    if cached is not None:
        return cached
    image_set = _decode_index(index, channels, size)
    store(key, image_set)
    return image_set


def _decode_index(index: FileIndex, channels: int, size: int) -> ImageSet:
    progress = len(index.paths) >= _PROGRESS_MIN_FILES and sys.stderr.isatty()
    images, decoded, skipped = decode_files(index.paths, channels=channels, size=size,
                                            progress=progress)
    if not decoded:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise UserError(f"none of the {len(index.paths)} images listed by {index.source} could "
                        f"be decoded{first}; check the files, e.g. with `imgcls data check`")
    item_of_path = dict(zip(map(str, index.paths), index.item_ids, strict=True))
    return ImageSet(
        images=images,
        labels=torch.tensor([index.labels[i] for i in decoded], dtype=torch.int64),
        class_names=index.class_names,
        item_ids=[index.item_ids[i] for i in decoded],
        preset_split=(None if index.preset_split is None
                      else [index.preset_split[i] for i in decoded]),
        source=index.source,
        hflip_ok=True,  # photos: a mirror image shows the same thing
        skipped=[(item_of_path[path], reason) for path, reason in skipped],
    )
