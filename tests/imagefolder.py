"""Writes small image folders for tests: three classes a person could tell apart
(bright top, bright bottom, bright centre), in mixed formats, modes and sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PATTERNS = ("top", "bottom", "centre")
# (suffix, PIL mode) cycled over the images: PNG and JPEG, every mode the loader converts.
FORMATS = ((".png", "L"), (".jpg", "RGB"), (".png", "RGBA"), (".png", "P"),
           (".jpg", "CMYK"), (".png", "I;16"), (".png", "LA"), (".jpeg", "L"))


def pattern_pixels(pattern: str, size: int, rng: np.random.Generator) -> np.ndarray:
    pixels = rng.integers(0, 60, (size, size)).astype(np.float64)
    half, quarter = size // 2, size // 4
    if pattern == "top":
        pixels[:half] += 180
    elif pattern == "bottom":
        pixels[half:] += 180
    else:
        pixels[quarter:-quarter, quarter:-quarter] += 180
    return np.clip(pixels, 0, 255).astype(np.uint8)


def to_mode(gray: np.ndarray, mode: str) -> Image.Image:
    image = Image.fromarray(gray, "L")
    if mode == "I;16":
        return Image.fromarray(gray.astype(np.uint16) * 257)  # the full 16-bit range
    if mode == "P":
        return image.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    return image.convert(mode)


def write_folder(root: Path, per_class: int = 30, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for pattern in PATTERNS:
        (root / pattern).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            suffix, mode = FORMATS[index % len(FORMATS)]
            size = int(rng.integers(28, 64))
            image = to_mode(pattern_pixels(pattern, size, rng), mode)
            image.save(root / pattern / f"{pattern}_{index:03d}{suffix}")
    return root
