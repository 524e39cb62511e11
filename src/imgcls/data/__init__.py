"""Data: sources -> decoded uint8 images -> split (see docs/architecture.md, "The pipeline").

Modules, one job each: sources (--data -> ImageSet), builtin (digits, fashion-mnist, mnist,
cifar10), file_index (folders and CSVs on disk), idx (IDX files), decode (the one image
preprocessing path; pixels, its PIL-only part, imports no torch), split (stratified,
seeded train/val/test).
"""

from __future__ import annotations

import importlib
from typing import Any

# Where each name lives, imported on first use (PEP 562): importing a torch-free module
# below (pixels, shrink) runs this file first, and must not import torch on the way.
_HOMES = {
    "BadImageError": "imgcls.data.pixels",
    "ImageSet": "imgcls.data.imageset",
    "Split": "imgcls.data.split",
    "decode_files": "imgcls.data.decode",
    "load_source": "imgcls.data.sources",
    "make_split": "imgcls.data.split",
    "native_format": "imgcls.data.sources",
    "open_image": "imgcls.data.pixels",
    "split_from_json": "imgcls.data.split",
    "to_uint8_chw": "imgcls.data.decode",
}

__all__ = [
    "BadImageError",
    "ImageSet",
    "Split",
    "decode_files",
    "load_source",
    "make_split",
    "native_format",
    "open_image",
    "split_from_json",
    "to_uint8_chw",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
