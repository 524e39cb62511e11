"""Writes image folders full of bad and odd files for the data doctor's tests (and runs
`imgcls data ...` on them).

`write_bad_folder` makes root/<class>/... with one file of each kind in EXPECTED_KINDS,
clean files in formats that need no comment, an empty class folder, a non-image file,
exact duplicates within and across classes, and file names that are not UTF-8.
`write_split_folder` makes root/{train,test}/<class>/... with one image in both splits.

The decompression bomb is a bomb only below BOMB_LIMIT: tests set
PIL.Image.MAX_IMAGE_PIXELS to it (every other image here is far smaller).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcls import cli
from imgcls.cli.data import add_commands as add_data_commands
from imgcls.cli.parsing import Parser

BOMB_LIMIT = 1000  # pixels; the bomb has 10,000, every other image at most 300
# The non-UTF-8 names, as bytes: "café.png" in Latin-1, and a broken file with byte 0xff.
GOOD_LATIN1_NAME = b"caf\xe9.png"
BAD_UNDECODABLE_NAME = b"bad\xff.jpg"

# Relative path (under the bad folder) -> the kind the doctor must report for it.
EXPECTED_KINDS = {
    "cats/zero.png": "zero_byte",
    "cats/text.jpg": "not_image",
    "cats/truncated.jpg": "truncated",
    "cats/truncated.png": "truncated",
    "cats/bomb.png": "bomb",
    "cats/png_named.jpg": "wrong_extension",
    "cats/tiny.png": "too_small",
    "cats/animated.gif": "animated",
    "cats/rgba.png": "alpha",
    "cats/palette.png": "palette",
    "cats/cmyk.jpg": "cmyk",
    "cats/deep.png": "high_bit_depth",
    "cats/rotated.jpg": "exif_rotation",
    "dogs/transparent.gif": "alpha",  # a single-frame GIF with a transparent colour
    "empty": "empty_class",
}
ERROR_FILES = ("cats/zero.png", "cats/text.jpg", "cats/truncated.jpg", "cats/truncated.png",
               "cats/bomb.png")  # plus dogs/<BAD_UNDECODABLE_NAME>
# Files that decode as they are: the doctor must say nothing about them.
CLEAN_FILES = ("dogs/photo.webp", "dogs/scan.tiff", "dogs/still.jpg", "dogs/plain.png",
               "cats/nested/deeper.png", "mice/one.png", "mice/two.png")
IGNORED_FILES = ("cats/readme.txt",)
WITHIN_CLASS = ("cats/original.png", "cats/copy.png")
ACROSS_CLASSES = ("cats/shared.png", "dogs/shared.png")
LEAKED_FILES = ("train/cats/leak.png", "test/cats/leak.png")  # in write_split_folder


def noise(seed: int, size: tuple[int, int] = (16, 16), mode: str = "RGB") -> Image.Image:
    """A distinct image per seed, so only the intended files are duplicates."""
    rng = np.random.default_rng(seed)
    width, height = size
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _animated_gif(seed: int) -> bytes:
    first, second = noise(seed, mode="P"), noise(seed + 1, mode="P")
    return encoded(first, "GIF", save_all=True, append_images=[second], duration=100)


def _rotated_jpeg(seed: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to show
    return encoded(noise(seed, size=(24, 12)), "JPEG", exif=exif)


def _transparent_gif(seed: int) -> bytes:
    image = noise(seed, mode="P")
    image.paste(0, (0, 0, 4, 4))  # GIF keeps a transparent index only if a pixel uses it
    return encoded(image, "GIF", transparency=0)


def _deep_png() -> bytes:
    gray16 = np.arange(256, dtype=np.uint16).reshape(16, 16) * 257
    return encoded(Image.fromarray(gray16), "PNG")


def _truncated(data: bytes, marker: bytes) -> bytes:
    """Cut a file a little after its first pixel-data marker: headers whole, pixels not."""
    return data[: data.index(marker) + 24]


def write_bad_folder(root: Path) -> Path:
    files = {
        "cats/zero.png": b"",
        "cats/text.jpg": b"this is a text file, not a JPEG\n",
        "cats/truncated.jpg": _truncated(encoded(noise(1), "JPEG"), b"\xff\xda"),
        "cats/truncated.png": _truncated(encoded(noise(2), "PNG"), b"IDAT"),
        "cats/bomb.png": encoded(noise(3, size=(100, 100)), "PNG"),
        "cats/png_named.jpg": encoded(noise(4), "PNG"),
        "cats/tiny.png": encoded(noise(5, size=(4, 4)), "PNG"),
        "cats/animated.gif": _animated_gif(6),
        "cats/rgba.png": encoded(noise(8, mode="RGBA"), "PNG"),
        "cats/palette.png": encoded(noise(9, mode="P"), "PNG"),
        "cats/cmyk.jpg": encoded(noise(10, mode="CMYK"), "JPEG"),
        "cats/deep.png": _deep_png(),
        "cats/rotated.jpg": _rotated_jpeg(11),
        "cats/nested/deeper.png": encoded(noise(12), "PNG"),
        "cats/readme.txt": b"notes about the cats\n",
        "dogs/transparent.gif": _transparent_gif(13),
        "dogs/photo.webp": encoded(noise(14), "WEBP"),
        "dogs/scan.tiff": encoded(noise(15), "TIFF"),
        "dogs/still.jpg": encoded(noise(16), "JPEG"),
        "dogs/plain.png": encoded(noise(17), "PNG"),
        "mice/one.png": encoded(noise(18), "PNG"),
        "mice/two.png": encoded(noise(19), "PNG"),
        "cats/.hidden.png": b"",  # hidden: skipped like the indexer skips it
    }
    for relative, data in files.items():
        _write(root / relative, data)
    duplicate = encoded(noise(20), "PNG")
    for relative in WITHIN_CLASS:
        _write(root / relative, duplicate)
    conflicting = encoded(noise(21), "PNG")
    for relative in ACROSS_CLASSES:
        _write(root / relative, conflicting)
    (root / "empty").mkdir()
    _write_bytes_name(root / "dogs", GOOD_LATIN1_NAME, encoded(noise(22), "PNG"))
    _write_bytes_name(root / "dogs", BAD_UNDECODABLE_NAME, b"not a JPEG either\n")
    return root


def _write_bytes_name(folder: Path, name: bytes, data: bytes) -> None:
    with open(os.path.join(os.fsencode(folder), name), "wb") as stream:
        stream.write(data)


def write_split_folder(root: Path) -> Path:
    """train/ and test/ levels; LEAKED_FILES hold the same bytes in both."""
    for index, relative in enumerate(("train/cats/a.png", "train/cats/b.png",
                                      "train/dogs/c.png", "train/dogs/d.png",
                                      "test/cats/e.png", "test/dogs/f.png")):
        _write(root / relative, encoded(noise(100 + index), "PNG"))
    leaked = encoded(noise(200), "PNG")
    for relative in LEAKED_FILES:
        _write(root / relative, leaked)
    return root


def tree_digest(root: Path) -> dict[bytes, str]:
    """{relative path as bytes: sha256 of the file} for every file below root, hidden too."""
    top = os.fsencode(root)
    digests = {}
    for current, _, names in os.walk(top):
        for name in names:
            path = os.path.join(current, name)
            with open(path, "rb") as stream:
                digests[os.path.relpath(path, top)] = hashlib.sha256(stream.read()).hexdigest()
    return digests


def run_data_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """`imgcls ARGV` through cli.main (so its UserError handling), with the data verbs."""

    def build_parser() -> argparse.ArgumentParser:
        parser = Parser(prog="imgcls")
        verbs = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
        add_data_commands(verbs)
        return parser

    monkeypatch.setattr(cli, "build_parser", build_parser)
    return cli.main(argv)
