"""What `imgcls predict` is given: image files, and folders of them."""

from __future__ import annotations

from pathlib import Path

from imgcls.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm"}


def image_files(inputs: list[str]) -> list[str]:
    """Files as given (a bad one is the Predictor's to report); folders become the image
    files below them, sorted. A folder without any is a UserError."""
    paths: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
                raise UserError(f"folder {path} holds no image files ({suffixes})")
            paths.extend(str(p) for p in found)
        else:
            paths.append(item)
    return paths
