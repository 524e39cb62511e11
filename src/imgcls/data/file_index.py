"""Index image files on disk: which file, which class, which preset split. No decoding.

Two layouts: a folder of class subfolders (root/<class>/..., or root/{train,val,test}/<class>/...)
and a CSV with columns path,label[,split]. Also guesses the format a data set is best
decoded at from a sample of image headers.
"""

from __future__ import annotations

import csv
import os
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from imgcls.errors import UserError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
# Folder names / CSV values that mean a split rather than a class.
_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                  "test": "test"}
_GRAY_MODES = {"1", "L", "LA", "I", "F"}  # plus every "I;16..." variant
_SNIFF_SAMPLE = 200  # image headers read to guess channels and size; enough for a median
_SIZE_RANGE = (28, 224)  # default size clamp: the smallest model input .. ImageNet's


@dataclass
class FileIndex:
    paths: list[Path]  # absolute
    labels: list[int]  # index into class_names
    class_names: list[str]
    item_ids: list[str]  # path relative to the source root (posix), or absolute when outside
    preset_split: list[str] | None
    source: str  # absolute path of the folder or CSV
    # (item, reason) of whole folders left out, such as a class folder with no images
    left_out: list[tuple[str, str]] = field(default_factory=list)


def sort_class_names(names: Iterable[str]) -> list[str]:
    """Sorted, numerically when every name is an integer (so "10" follows "9")."""
    unique = set(names)
    if unique and all(name.isdecimal() for name in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def index_folder(root: Path) -> FileIndex:
    """root/<class>/<images>, or root/{train,val,test}/<class>/<images> (preset split).

    Class folders are searched recursively; hidden files and folders, and files whose
    extension is not an image's, are ignored.
    """
    subdirs = _visible_subdirs(root)
    splits = {folder: _SPLIT_ALIASES.get(folder.name.lower()) for folder in subdirs}
    if subdirs and all(splits.values()):
        entries = [(path, cls, split) for folder, split in splits.items()
                   for path, cls in _class_folder_images(folder)]
    elif "train" in splits.values():
        others = ", ".join(folder.name for folder, split in splits.items() if not split)
        raise UserError(f"{root} mixes split folders (train/val/test) with other folders "
                        f"({others}); move the classes under train/, val/, test/")
    else:
        entries = [(path, cls, None) for path, cls in _class_folder_images(root)]
    left_out = [(f"{folder.relative_to(root).as_posix()}/",
                 "class folder without images: the class is left out")
                for folder in _empty_class_folders(root, subdirs, splits)]
    names = sort_class_names(cls for _, cls, _ in entries)
    if not names:
        raise UserError(f"{root} has no images in its class folders "
                        f"({' '.join(sorted(IMAGE_EXTENSIONS))}); add images")
    if len(names) < 2:
        empty = ", ".join(item for item, _ in left_out)
        without = f" (class folders with no images: {empty})" if empty else ""
        raise UserError(f"{root} has only one class ({names[0]!r}){without}; a classifier "
                        f"needs >= 2 classes: add another class subfolder with images")
    label_of = {name: label for label, name in enumerate(names)}
    preset = [split for _, _, split in entries]
    return FileIndex(
        paths=[path for path, _, _ in entries],
        labels=[label_of[cls] for _, cls, _ in entries],
        class_names=names,
        item_ids=[path.relative_to(root).as_posix() for path, _, _ in entries],
        preset_split=preset if preset and preset[0] is not None else None,
        source=str(root),
        left_out=left_out,
    )


def _empty_class_folders(
    root: Path, subdirs: list[Path], splits: dict[Path, str | None]
) -> list[Path]:
    parents = subdirs if subdirs and all(splits.values()) else [root]
    return [folder for parent in parents for folder in _visible_subdirs(parent)
            if not _images_under(folder)]


def _class_folder_images(parent: Path) -> list[tuple[Path, str]]:
    """(image path, class name) for every image under parent/<class>/, sorted."""
    class_dirs = _visible_subdirs(parent)
    if not class_dirs:
        loose = sum(1 for path in parent.iterdir() if _is_image_file(path))
        raise UserError(f"{parent} has no class subfolders ({loose} loose image file(s) in it); "
                        f"arrange images as {parent}/<class>/<image>")
    found = []
    for class_dir in class_dirs:
        # An empty class folder is left out (and reported), not a reason to stop: a class
        # with no images can't be learned, and the others still can.
        found += [(path, class_dir.name) for path in _images_under(class_dir)]
    return found


def _visible_subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_under(folder: Path) -> list[Path]:
    found = []
    for current, dirnames, filenames in os.walk(folder):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]  # prune hidden
        found += [Path(current, name) for name in filenames if _is_image_file(Path(name))]
    return sorted(found)


def _is_image_file(path: Path) -> bool:
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def index_csv(csv_path: Path) -> FileIndex:
    """A CSV with a header row: path,label and optionally split (train/val/test).

    Relative paths are relative to the CSV's folder. A row whose file is missing is not an
    error here: decoding reports it as a bad item.
    """
    rows = _read_csv_rows(csv_path)
    base = csv_path.parent
    seen: dict[str, int] = {}
    paths, item_ids, label_names, splits = [], [], [], []
    for line, path_text, label, split in rows:
        path = Path(path_text).expanduser()
        path = Path(os.path.normpath(path if path.is_absolute() else base / path))
        item_id = _item_id(path, base)
        if item_id in seen:
            raise UserError(f"{csv_path} line {line}: {path_text!r} is also on line "
                            f"{seen[item_id]}; list each image once")
        seen[item_id] = line
        paths.append(path)
        item_ids.append(item_id)
        label_names.append(label)
        splits.append(split)
    names = sort_class_names(label_names)
    if len(names) < 2:
        raise UserError(f"{csv_path} has {len(names)} distinct label(s) ({', '.join(names)}); "
                        f"a classifier needs >= 2: add rows with other labels")
    label_of = {name: label for label, name in enumerate(names)}
    return FileIndex(
        paths=paths,
        labels=[label_of[name] for name in label_names],
        class_names=names,
        item_ids=item_ids,
        preset_split=splits if splits and splits[0] is not None else None,
        source=str(csv_path),
    )


def _read_csv_rows(csv_path: Path) -> list[tuple[int, str, str, str | None]]:
    """(line number, path, label, split or None) per non-blank row, validated."""
    # utf-8-sig: spreadsheet programs often start a CSV with a byte-order mark.
    with csv_path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = [cell.strip().lower() for cell in next(reader, [])]
        missing = [column for column in ("path", "label") if column not in header]
        if missing:
            found = ", ".join(header) if header else "no header row"
            raise UserError(f"{csv_path} lacks column(s) {', '.join(missing)} (found: {found});"
                            f" the first row must name the columns path,label[,split]")
        columns = [header.index(name) if name in header else None
                   for name in ("path", "label", "split")]
        rows = []
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            path, label, split = (cells[c].strip() if c is not None and c < len(cells) else ""
                                  for c in columns)
            if not path or not label:
                raise UserError(f"{csv_path} line {reader.line_num}: empty path or label; "
                                f"fill it in or delete the row")
            rows.append((reader.line_num, path, label,
                         _csv_split(csv_path, reader.line_num, split, columns[2] is not None)))
    return rows


def _csv_split(csv_path: Path, line: int, value: str, has_column: bool) -> str | None:
    if not has_column:
        return None
    split = _SPLIT_ALIASES.get(value.lower())
    if split is None:
        raise UserError(f"{csv_path} line {line}: split {value!r} is not train, val or test; "
                        f"fix the value (or drop the split column to split automatically)")
    return split


def _item_id(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:  # outside the CSV's folder: the absolute path is the stable id
        return path.as_posix()


def sniff_format(paths: list[Path]) -> tuple[int, int]:
    """(channels, size) to decode at, from at most 200 image headers (no pixel decoding).

    channels: 1 when every sampled image is grayscale-ish, else 3. size: the median shorter
    side, clamped to [28, 224]. Unreadable files are left out (decoding reports them).
    """
    step = max(1, len(paths) // _SNIFF_SAMPLE)
    modes, short_sides = [], []
    for path in paths[::step][:_SNIFF_SAMPLE]:  # spread over all classes (paths are sorted)
        try:
            with Image.open(path) as image:
                modes.append(image.mode)
                short_sides.append(min(image.size))
        except Exception:  # a bad file says nothing about the format of the good ones
            continue
    if not modes:
        return 3, _SIZE_RANGE[1]
    gray = all(mode in _GRAY_MODES or mode.startswith("I;") for mode in modes)
    size = min(max(statistics.median_low(short_sides), _SIZE_RANGE[0]), _SIZE_RANGE[1])
    return (1 if gray else 3), size
