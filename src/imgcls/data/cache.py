"""The decoded uint8 images of a folder or CSV, kept on disk and memory-mapped.

A second load of the same files at the same (channels, size) reads no image at all. An
entry is two files in the cache folder, named by the source's key:

    <key>.u8     the pixels: uint8 [N, C, H, W], raw, C order
    <key>.json   shape, labels, class names, item ids, preset split, skipped files

The pixels are written first and the JSON last, each atomically (tmp file + os.replace), so
the JSON marks a complete entry. An entry that can't be read or doesn't fit its JSON (a
truncated .u8, a broken .json) is a miss: it is decoded again and rewritten. A flipped
byte inside a full-size .u8 is not detected: that would take reading every pixel.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgcls.data.file_index import FileIndex
from imgcls.data.imageset import ImageSet
from imgcls.utils.files import atomic_path, write_json
from imgcls.utils.paths import cache_dir

# Part of every key: bump it whenever decoding changes pixels (resampling, colour, EXIF), so
# entries written by older code are not reused.
DECODE_VERSION = 2
_FORMAT = "imgcls-decoded-v1"  # the layout of the two files


def cache_root() -> Path:
    """$IMGCLS_CACHE_DIR, else ~/.cache/imgcls/decoded (respects XDG_CACHE_HOME)."""
    override = os.environ.get("IMGCLS_CACHE_DIR")
    return Path(override).expanduser() if override else cache_dir() / "decoded"


def source_key(index: FileIndex, channels: int, size: int) -> str:
    """A hash of what the decoded tensor depends on, read from file metadata only.

    Per file: item id (relative path), label, preset split, byte size and mtime_ns; plus the
    resolved source (folder or CSV), class names, channels, size and DECODE_VERSION. The
    source is in it because two folders can hold the same relative names with the same
    sizes and times (a copy that kept them) and different pixels; a data set that moves is
    decoded again. Labels are in it because a CSV can
    relabel files without touching them. File contents are not hashed: for 10,000 JPEGs
    (556 MB) the stats took 0.07 s and reading + hashing the bytes 0.67 s even with every
    file in the page cache; from a cold or network disk, the time to read the whole data
    set, on every load (bench/decode_throughput.py measures both). An editor or
    copy that keeps size and mtime but changes pixels goes unnoticed: delete the cache
    folder then.
    """
    digest = hashlib.sha256()
    source = os.path.realpath(index.source)
    digest.update(json.dumps([DECODE_VERSION, source, channels, size, index.class_names])
                  .encode())
    splits = index.preset_split or [None] * len(index.paths)
    for path, item_id, label, split in zip(
        index.paths, index.item_ids, index.labels, splits, strict=True
    ):
        digest.update(json.dumps([item_id, label, split, *_file_stamp(path)]).encode())
    return digest.hexdigest()[:32]


def _file_stamp(path: Path) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except OSError:  # missing: decoding reports it; the file appearing later changes the key
        return -1, -1
    return stat.st_size, stat.st_mtime_ns


def load_cached(key: str, *, source: str, root: Path | None = None) -> ImageSet | None:
    """The cached ImageSet for `key` with memory-mapped images, or None on any miss."""
    pixels_path, meta_path = _entry_paths(root or cache_root(), key)
    try:
        meta = json.loads(meta_path.read_text())
        return _image_set(meta, pixels_path, key, source)
    except (OSError, ValueError, KeyError, TypeError):  # absent, partial or foreign: a miss
        return None


def _image_set(meta: dict[str, Any], pixels_path: Path, key: str, source: str) -> ImageSet:
    shape = tuple(int(n) for n in meta["shape"])
    if meta["format"] != _FORMAT or meta["key"] != key or len(shape) != 4:
        raise ValueError("not an entry for this key")
    if pixels_path.stat().st_size != math.prod(shape):
        raise ValueError("pixel file size does not match its shape")  # e.g. truncated
    # Copy-on-write: the tensor is writable (torch wants that), and a write stays in this
    # process instead of changing the cache. Pages load on first touch and the OS can drop
    # them again, so a cached set costs little resident memory until it is used.
    pixels = np.memmap(pixels_path, dtype=np.uint8, mode="c", shape=shape)
    return ImageSet(
        images=torch.from_numpy(pixels),
        labels=torch.tensor(meta["labels"], dtype=torch.int64),
        class_names=list(meta["class_names"]),
        item_ids=list(meta["item_ids"]),
        preset_split=meta["preset_split"],
        source=source,  # where the files are now: the same files may have moved
        hflip_ok=bool(meta["hflip_ok"]),
        skipped=[(item, reason) for item, reason in meta["skipped"]],
    )


def store(key: str, image_set: ImageSet, *, root: Path | None = None) -> None:
    """Write `image_set` as the entry for `key`. A cache that can't be written (read-only
    or full disk) costs the next run a decode, never this one: it warns and returns."""
    root = root or cache_root()
    pixels_path, meta_path = _entry_paths(root, key)
    try:
        with atomic_path(pixels_path) as temporary:
            image_set.images.contiguous().numpy().tofile(temporary)
        write_json(meta_path, _meta(key, image_set))
        _remove_stale(root, key, image_set)
    except OSError as error:
        print(f"warning: decoded images not cached in {root} ({error}); the next run "
              f"decodes them again", file=sys.stderr)


def _meta(key: str, image_set: ImageSet) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "key": key,
        "source": image_set.source,  # informative, and to find stale entries
        "shape": list(image_set.images.shape),
        "labels": image_set.labels.tolist(),
        "class_names": image_set.class_names,
        "item_ids": image_set.item_ids,
        "preset_split": image_set.preset_split,
        "hflip_ok": image_set.hflip_ok,
        "skipped": [list(pair) for pair in image_set.skipped],
    }


def _remove_stale(root: Path, key: str, image_set: ImageSet) -> None:
    """Delete older entries of the same source and format: after a file changes, the old
    entry can never be hit again. Other formats of the same source stay (both are used)."""
    for meta_path in root.glob("*.json"):
        if meta_path.stem == key:
            continue
        try:
            meta = json.loads(meta_path.read_text())
            same = (meta["source"] == image_set.source
                    and meta["shape"][1:] == list(image_set.images.shape[1:]))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue  # not ours to judge (or being written right now)
        if same:
            for path in _entry_paths(root, meta_path.stem):
                path.unlink(missing_ok=True)


def _entry_paths(root: Path, key: str) -> tuple[Path, Path]:
    return root / f"{key}.u8", root / f"{key}.json"
