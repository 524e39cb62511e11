"""Data: sources -> decoded uint8 images -> split (see DESIGN.md, "The pipeline").

Modules, one job each: sources (--data -> ImageSet), builtin (digits, fashion-mnist, mnist,
cifar10), file_index (folders and CSVs on disk), idx (IDX files), decode (the one image
preprocessing path), split (stratified, seeded train/val/test).
"""

from imgcls.data.decode import BadImageError, decode_files, open_image, to_uint8_chw
from imgcls.data.imageset import ImageSet
from imgcls.data.sources import load_source, native_format
from imgcls.data.split import Split, make_split, split_from_json

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
