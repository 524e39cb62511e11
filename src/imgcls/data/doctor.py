"""The data doctor: scan every file of a folder or CSV source and report what is wrong.

Nothing is changed on disk. Per file (in a thread pool): bad files (missing, zero-byte, not
an image, truncated, decompression bomb), odd ones (an extension that lies about the
format, too small, animated) and the conversions decoding will make (CMYK, 16-bit, alpha,
palette, EXIF rotation). Over the whole set: exact duplicates by content hash, class
counts and imbalance, image sizes, empty class folders and ignored non-image files.

File names need not be UTF-8: paths stay `str` with surrogate escapes (os.fsdecode) in the
API, and become `display()` text, which always encodes, in the report and on the console.
The scan returns a DoctorReport; doctor_report.py prints it.
"""

from __future__ import annotations

import hashlib
import os
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from imgcls.data.builtin import builtin_name
from imgcls.data.decode import BadImageError, open_image
from imgcls.data.file_index import IMAGE_EXTENSIONS, index_csv
from imgcls.data.imageset import SPLIT_NAMES
from imgcls.errors import UserError

Severity = Literal["error", "warning", "note"]

MIN_SIDE = 8  # pixels; smaller images hold too little to classify (and break some models)
# The same folder names file_index takes for a split level (kept in step by hand).
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test"}
# Kinds of error that a file itself has: the ones `quarantine` moves away.
FILE_ERROR_KINDS = frozenset({"zero_byte", "not_image", "truncated", "bomb", "unreadable"})
# BadImageError reason prefix -> kind (decode.py words its reasons this way).
_REASON_KINDS = (("file not found", "missing"), ("empty file", "zero_byte"),
                 ("not an image", "not_image"), ("truncated", "truncated"),
                 ("decompression bomb", "bomb"))
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_WIDE_MODES = {"I", "F"}  # plus every "I;16..." variant
# Formats that are the same thing under another name (a camera's MPO is a JPEG).
_FORMAT_ALIASES = {"MPO": "JPEG"}
_SIZE_BUCKETS = (8, 32, 64, 128, 256, 512, 1024)  # bucket edges of the shorter side
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Finding:
    path: str  # absolute; may hold surrogate escapes (a non-UTF-8 name)
    kind: str  # e.g. "truncated", "wrong_extension", "cmyk", "empty_class"
    reason: str  # one line a person reads
    severity: Severity


@dataclass(frozen=True)
class DuplicateGroup:
    """Files with the same bytes (sha256), with the class and split of each."""

    sha256: str
    paths: tuple[str, ...]
    classes: tuple[str | None, ...]  # per path; None for a file outside any class folder
    splits: tuple[str | None, ...]  # per path; None when the source has no split level

    @property
    def kinds(self) -> list[str]:
        """within_class (same class and split twice), across_classes (conflicting labels),
        across_splits (the same image in train and val/test: leakage)."""
        kinds = []
        if len(set(zip(self.classes, self.splits, strict=True))) < len(self.paths):
            kinds.append("within_class")
        if len(set(self.classes)) > 1:
            kinds.append("across_classes")
        if len({split for split in self.splits if split is not None}) > 1:
            kinds.append("across_splits")
        return kinds


@dataclass
class SizeSummary:
    """Width and height (min, median, max) of the readable images, and how many fall in each
    bucket of the shorter side."""

    count: int = 0
    width: tuple[int, float, int] | None = None
    height: tuple[int, float, int] | None = None
    buckets: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def spread(values: tuple[int, float, int] | None) -> dict[str, float] | None:
            return None if values is None else dict(zip(("min", "median", "max"), values,
                                                        strict=True))

        return {"count": self.count, "width": spread(self.width),
                "height": spread(self.height), "shorter_side_buckets": self.buckets}


@dataclass
class DoctorReport:
    source: str  # the folder or CSV, absolute
    root: Path  # the folder paths are relative to (a CSV's own folder)
    layout: Literal["folder", "folder-splits", "csv"]
    files_checked: int
    problems: list[Finding]
    duplicates: list[DuplicateGroup]
    class_counts: dict[str, int]  # readable images per class, over all splits
    split_counts: dict[str, dict[str, int]] | None  # split -> class -> readable images
    imbalance_ratio: float | None  # largest class / smallest non-empty class
    sizes: SizeSummary
    ignored: list[str]  # files skipped because their extension is not an image's

    def count(self, severity: Severity) -> int:
        return sum(1 for finding in self.problems if finding.severity == severity)

    @property
    def has_errors(self) -> bool:
        return self.count("error") > 0

    def to_json(self) -> dict[str, Any]:
        shown = self.display_path
        return {
            "source": display(self.source),
            "root": display(str(self.root)),
            "layout": self.layout,
            "files_checked": self.files_checked,
            "summary": {"errors": self.count("error"), "warnings": self.count("warning"),
                        "notes": self.count("note"), "duplicate_groups": len(self.duplicates),
                        "ignored": len(self.ignored)},
            "problems": [{"path": shown(f.path), "kind": f.kind, "reason": f.reason,
                          "severity": f.severity} for f in self.problems],
            "duplicates": [{"sha256": group.sha256, "kinds": group.kinds,
                            "paths": [shown(path) for path in group.paths],
                            "classes": [_display_or_none(name) for name in group.classes],
                            "splits": list(group.splits)} for group in self.duplicates],
            "class_counts": {display(name): n for name, n in self.class_counts.items()},
            "split_counts": None if self.split_counts is None else {
                split: {display(name): n for name, n in counts.items()}
                for split, counts in self.split_counts.items()},
            "imbalance_ratio": self.imbalance_ratio,
            "sizes": self.sizes.to_json(),
            "ignored": [shown(path) for path in self.ignored],
        }

    def display_path(self, path: str) -> str:
        """`path` relative to the root where it lies below it, as printable text."""
        try:
            path = Path(path).relative_to(self.root).as_posix()
        except ValueError:
            pass
        return display(str(path))


def display(text: str) -> str:
    """Text that any encoder accepts: undecodable bytes of a file name (surrogate escapes)
    are written as \\xNN, the way Python's ascii() shows them."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def _display_or_none(text: str | None) -> str | None:
    return None if text is None else display(text)


# --- what to scan --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Entry:
    path: str
    class_name: str | None  # None: a loose file beside the class folders
    split: str | None


@dataclass
class _Inventory:
    source: Path  # the folder or CSV, absolute
    root: Path
    layout: Literal["folder", "folder-splits", "csv"]
    entries: list[_Entry] = field(default_factory=list)
    class_keys: list[tuple[str | None, str]] = field(default_factory=list)  # (split, class)
    findings: list[Finding] = field(default_factory=list)  # layout, empty class, loose file
    ignored: list[str] = field(default_factory=list)


def _inventory(source: str | Path) -> _Inventory:
    text = os.fspath(source)
    if builtin_name(text) is not None:
        raise UserError(f"{text!r} is a built-in data set, checked when it is made; "
                        f"`data check` takes a folder of class subfolders or a CSV")
    path = Path(text).expanduser()
    if not text.strip() or not path.exists():
        raise UserError(f"data source {display(text)!r} is not an existing folder or CSV "
                        f"file; pass a folder of class subfolders or a CSV path,label[,split]")
    path = path.resolve()
    if path.is_dir():
        return _inventory_folder(path)
    if path.suffix.lower() == ".csv":
        return _inventory_csv(path)
    raise UserError(f"data source {display(str(path))!r} is a file but not a .csv; pass a "
                    f"folder of class subfolders or a CSV path,label[,split]")


def _inventory_csv(csv_path: Path) -> _Inventory:
    index = index_csv(csv_path)  # a malformed CSV is the user's to fix: UserError
    found = _Inventory(source=csv_path, root=csv_path.parent, layout="csv")
    splits = index.preset_split or [None] * len(index.paths)
    found.entries = [_Entry(str(path), index.class_names[label], split)
                     for path, label, split in zip(index.paths, index.labels, splits,
                                                   strict=True)]
    found.class_keys = sorted({(entry.split, entry.class_name) for entry in found.entries},
                              key=lambda key: (key[0] or "", key[1]))
    return found


def _inventory_folder(root: Path) -> _Inventory:
    """Like file_index.index_folder, but a layout problem is a finding, not a stop."""
    subdirs = _visible_subdirs(root)
    split_of = {folder: SPLIT_ALIASES.get(folder.name.lower()) for folder in subdirs}
    if subdirs and all(split_of.values()):
        found = _Inventory(source=root, root=root, layout="folder-splits")
        parents = [(folder, split_of[folder]) for folder in subdirs]
    else:
        found = _Inventory(source=root, root=root, layout="folder")
        parents = [(root, None)]
        if any(split_of.values()):
            found.findings.append(Finding(str(root), "layout", "split folders (train/val/test) "
                                          "beside class folders; training refuses this: move "
                                          "the classes under train/, val/, test/", "error"))
    for parent, split in parents:
        _inventory_classes(found, parent, split)
    classes = {name for _, name in found.class_keys}
    if len(classes) == 1:
        found.findings.append(Finding(str(root), "layout", "only one class folder; a "
                                      "classifier needs two or more", "error"))
    return found


def _inventory_classes(found: _Inventory, parent: Path, split: str | None) -> None:
    class_dirs = _visible_subdirs(parent)
    if not class_dirs:
        found.findings.append(Finding(str(parent), "layout", "no class subfolders; arrange "
                                      "images as <folder>/<class>/<image>", "error"))
    for path in sorted(p for p in parent.iterdir() if p.is_file() and not _hidden(p)):
        if _has_image_suffix(path):
            found.entries.append(_Entry(str(path), None, split))
            found.findings.append(Finding(str(path), "loose_file", "image outside any class "
                                          "folder; training ignores it", "warning"))
        else:
            found.ignored.append(str(path))
    for class_dir in class_dirs:
        found.class_keys.append((split, class_dir.name))
        images = _files_under(class_dir, found.ignored)
        if not images:
            found.findings.append(Finding(str(class_dir), "empty_class", "class folder without "
                                          "images; training refuses it: add images or remove "
                                          "the folder", "error"))
        found.entries += [_Entry(str(path), class_dir.name, split) for path in images]


def _files_under(folder: Path, ignored: list[str]) -> list[Path]:
    """Image files below `folder`, sorted; other visible files are added to `ignored`."""
    images = []
    for current, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in sorted(filenames):
            path = Path(current, name)
            if _hidden(path):
                continue
            if _has_image_suffix(path):
                images.append(path)
            else:
                ignored.append(str(path))
    return sorted(images)


def _visible_subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not _hidden(p))


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _has_image_suffix(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


# --- one file ------------------------------------------------------------------------------

@dataclass
class _FileResult:
    entry: _Entry
    sha256: str | None  # None when the file can't be read at all
    size: tuple[int, int] | None  # None when the image is unusable
    findings: list[Finding]


def _check_file(entry: _Entry) -> _FileResult:
    path = entry.path
    digest = _sha256(path)
    try:
        open_image(path)  # the decoder's own verdict: fully decoded, bombs refused
        # Reopened for what the decoded copy no longer answers: a closed GIF can't count
        # its frames.
        with Image.open(path) as image:
            findings = _odd_file_findings(path, image) + _conversion_notes(path, image)
            return _FileResult(entry, digest, image.size, findings)
    except BadImageError as error:
        return _FileResult(entry, digest, None, [_bad_file(path, error)])
    except Exception as error:  # an odd file (or one deleted meanwhile) must not stop the scan
        reason = f"cannot decode ({type(error).__name__}: {error})"
        return _FileResult(entry, digest, None, [Finding(path, "unreadable", reason, "error")])


def _bad_file(path: str, error: BadImageError) -> Finding:
    # A future BadImageError.kind wins over guessing from the wording of the reason.
    kind = getattr(error, "kind", None) or next(
        (kind for prefix, kind in _REASON_KINDS if error.reason.startswith(prefix)),
        "unreadable")
    return Finding(path, kind, error.reason, "error")


def _odd_file_findings(path: str, image: Image.Image) -> list[Finding]:
    findings = []
    suffix = Path(path).suffix.lower()
    claimed = Image.registered_extensions().get(suffix)
    actual = _FORMAT_ALIASES.get(image.format or "", image.format)
    if claimed != actual:
        findings.append(Finding(path, "wrong_extension", f"a {image.format} file named "
                                f"{suffix or '(no extension)'}; rename it .{_suffix_for(actual)}",
                                "warning"))
    if min(image.size) < MIN_SIDE:
        width, height = image.size
        findings.append(Finding(path, "too_small", f"{width}x{height} pixels, under "
                                f"{MIN_SIDE} a side", "warning"))
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        findings.append(Finding(path, "animated", f"{frames} frames; only the first is used",
                                "warning"))
    return findings


def _suffix_for(image_format: str | None) -> str:
    suffixes = [ext for ext, name in Image.registered_extensions().items()
                if name == image_format]
    # The suffixes the indexer reads first (.jpg, not PIL's first, .jfif).
    suffixes.sort(key=lambda ext: ext not in IMAGE_EXTENSIONS)
    return suffixes[0].lstrip(".") if suffixes else "?"


def _conversion_notes(path: str, image: Image.Image) -> list[Finding]:
    """What decode.to_uint8_chw will do to this image, so nobody is surprised."""
    mode = image.mode
    notes = []
    if mode == "CMYK":
        notes.append(("cmyk", "CMYK: converted to RGB"))
    if mode in _WIDE_MODES or mode.startswith("I;"):
        notes.append(("high_bit_depth", f"mode {mode}: scaled to 8 bits by its own range"))
    if mode in _ALPHA_MODES or "transparency" in image.info:
        notes.append(("alpha", f"mode {mode} with transparency: composited on white"))
    if mode == "P":
        notes.append(("palette", "palette image: converted to RGB or gray"))
    orientation = _exif_orientation(image)
    if orientation not in (None, 1):
        notes.append(("exif_rotation", f"EXIF orientation {orientation}: turned upright"))
    return [Finding(path, kind, reason, "note") for kind, reason in notes]


def _exif_orientation(image: Image.Image) -> int | None:
    try:
        return image.getexif().get(0x0112)  # the Orientation tag
    except Exception:  # a broken EXIF block costs the note, not the scan
        return None


def _sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


# --- the whole set -------------------------------------------------------------------------

def scan(source: str | Path, *, workers: int | None = None) -> DoctorReport:
    """Check every file of a folder or CSV source; raises UserError for a missing source.

    `workers` threads do the per-file work (hashing and decoding; PIL releases the GIL);
    None picks ThreadPoolExecutor's default.
    """
    found = _inventory(source)
    Image.init()  # every plugin registered before the threads ask which suffix is whose
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_check_file, found.entries))
    usable = [result for result in results if result.size is not None]
    problems = found.findings + [finding for result in results for finding in result.findings]
    class_counts, split_counts = _class_counts(found, usable)
    return DoctorReport(
        source=str(found.source),
        root=found.root,
        layout=found.layout,
        files_checked=len(results),
        problems=sorted(problems, key=_problem_order),
        duplicates=_duplicates(usable),
        class_counts=class_counts,
        split_counts=split_counts,
        imbalance_ratio=_imbalance(class_counts),
        sizes=_size_summary(result.size for result in usable if result.size),
        ignored=found.ignored,
    )


def _problem_order(finding: Finding) -> tuple[int, str, str]:
    return ("error", "warning", "note").index(finding.severity), finding.kind, finding.path


def _class_counts(
    found: _Inventory, usable: list[_FileResult]
) -> tuple[dict[str, int], dict[str, dict[str, int]] | None]:
    """Readable images per class (empty classes included, as 0), overall and per split."""
    per_key = Counter((r.entry.split, r.entry.class_name) for r in usable
                      if r.entry.class_name is not None)
    totals: dict[str, int] = {}
    by_split: dict[str, dict[str, int]] = defaultdict(dict)
    for split, name in found.class_keys:
        totals[name] = totals.get(name, 0) + per_key[(split, name)]
        if split is not None:
            by_split[split][name] = per_key[(split, name)]
    has_splits = any(split is not None for split, _ in found.class_keys)
    ordered = {split: by_split[split] for split in SPLIT_NAMES if split in by_split}
    return dict(sorted(totals.items())), (ordered if has_splits else None)


def _imbalance(class_counts: dict[str, int]) -> float | None:
    nonempty = [count for count in class_counts.values() if count > 0]
    return max(nonempty) / min(nonempty) if nonempty else None


def _duplicates(usable: list[_FileResult]) -> list[DuplicateGroup]:
    # Only usable images: every zero-byte file has the same hash and says nothing.
    by_hash: dict[str, list[_FileResult]] = defaultdict(list)
    for result in usable:
        if result.sha256 is not None:
            by_hash[result.sha256].append(result)
    return [DuplicateGroup(sha256=digest,
                           paths=tuple(r.entry.path for r in group),
                           classes=tuple(r.entry.class_name for r in group),
                           splits=tuple(r.entry.split for r in group))
            for digest, group in sorted(by_hash.items()) if len(group) > 1]


def _size_summary(sizes: Iterable[tuple[int, int]]) -> SizeSummary:
    sizes = list(sizes)
    labels = _bucket_labels()
    buckets = dict.fromkeys(labels, 0)
    if not sizes:
        return SizeSummary(buckets=buckets)
    for width, height in sizes:
        edge = sum(1 for limit in _SIZE_BUCKETS if min(width, height) >= limit)
        buckets[labels[edge]] += 1
    widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
    return SizeSummary(
        count=len(sizes),
        width=(min(widths), statistics.median(widths), max(widths)),
        height=(min(heights), statistics.median(heights), max(heights)),
        buckets=buckets,
    )


def _bucket_labels() -> list[str]:
    edges = _SIZE_BUCKETS
    middle = [f"{low}-{high - 1}" for low, high in zip(edges, edges[1:], strict=False)]
    return [f"<{edges[0]}", *middle, f">={edges[-1]}"]
