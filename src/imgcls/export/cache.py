"""Where a model file's derived files live: its ONNX exports, the int8 check and the timings.

They sit in `<stem>.backends/` beside the model file, each name starting with the first 16
hex digits of the model file's sha256, so a retrained (changed) file never reuses another's
exports. Where that folder cannot be written (a read-only mount, a container's image), they
go to $IMGCLS_CACHE_DIR/backends (else ~/.cache/imgcls/backends) under the same names.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from imgcls.utils.paths import cache_dir

_DIGITS = 16  # of the sha256: enough to tell one model file from another


@dataclass(frozen=True)
class BackendCache:
    folder: Path
    key: str  # the model file's sha256, shortened

    def path(self, name: str) -> Path:
        """`fp32.onnx`, `int8.onnx`, `int8.json`, `timings.json` for this model file."""
        return self.folder / f"{self.key}.{name}"


def cache_for(model_file: Path) -> BackendCache:
    """The cache of `model_file`: beside it where writable, else in the user's cache dir.
    Files of earlier versions of the model file are removed from it."""
    key = file_sha256(model_file)[:_DIGITS]
    for folder in (model_file.parent / f"{model_file.stem}.backends", shared_folder()):
        if _writable(folder):
            cache = BackendCache(folder, key)
            if folder.parent == model_file.parent:
                _remove_stale(cache)
            return cache
    raise OSError(f"no writable cache folder for {model_file}: set IMGCLS_CACHE_DIR")


def shared_folder() -> Path:
    override = os.environ.get("IMGCLS_CACHE_DIR")
    return (Path(override).expanduser() if override else cache_dir()) / "backends"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _remove_stale(cache: BackendCache) -> None:
    # Only the folder beside the model holds one model's files; the shared one holds many.
    for item in cache.folder.iterdir():
        if item.is_file() and not item.name.startswith(cache.key + "."):
            item.unlink(missing_ok=True)
