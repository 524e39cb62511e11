"""What `imgcls data restore` may move, and where: the manifest is not trusted.

A manifest is a file anyone could have written. An entry is moved back only when
- its `quarantined` path is relative, without `..`, and (symbolic links followed) inside the
  manifest's folder, and names a regular file there, not a link;
- its `original` is the data root joined with that same relative path (so it lies inside
  the root), and no symbolic link on the way leads out of the root;
- it records a sha256 (the bytes are checked before the move).
A symbolic link is never moved back: one that quarantine moved out (a data set of links)
is named, with its target, to be moved by hand.
Otherwise `plan_move` says why, in one line that names the entry.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from imgcls.data.doctor import display

OUTSIDE_ROOT = "_outside_root"  # where quarantine puts files from outside the data root
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class PlannedMove:
    source: Path  # the quarantined file, inside the manifest's folder
    destination: Path  # where it came from, inside the data root
    sha256: str  # what its bytes must hash to


def plan_move(entry: dict[str, Any], folder: Path, root: Path | None) -> PlannedMove | str:
    """The move that restores `entry`, or why it is refused (one line, naming the entry).
    `folder` is the manifest's folder, resolved; `root` the data root it records."""
    name = display(str(entry.get("quarantined")))
    relative = _relative_path(entry.get("quarantined"))
    if relative is None:
        return f"{name}: not a relative path inside the quarantine folder"
    if relative.parts[0] == OUTSIDE_ROOT:
        return (f"{name}: lay outside the data root when quarantined; restore only moves "
                f"files back into it, so move this one to {_shown(entry.get('original'))} "
                f"by hand")
    if root is None or not root.is_absolute():
        return f"{name}: the manifest records no absolute data root to restore into"
    source, destination = folder.joinpath(*relative.parts), root.joinpath(*relative.parts)
    if not _inside(source.parent, folder):
        return (f"{name}: a symbolic link leads it outside the quarantine folder "
                f"{display(str(folder))}")
    original = entry.get("original")
    # The move goes to `destination`; `original` only has to agree with it.
    if not isinstance(original, str) or os.path.normpath(original) != str(destination):
        return (f"{name}: its recorded original {_shown(original)} is not "
                f"{display(str(destination))}, its place under the data root")
    if not _inside(destination.parent, Path(os.path.realpath(root))):
        return (f"{name}: a symbolic link leads {display(str(destination))} outside the data "
                f"root {display(str(root))}")
    if os.path.islink(source):  # before the hash: quarantine records none for a link
        return f"{name}: {source_problem(source)}"
    sha256 = entry.get("sha256")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        return (f"{name}: no sha256 recorded, so its bytes can't be checked; move it back "
                f"by hand if it is what you expect")
    return PlannedMove(source, destination, sha256)


def source_problem(source: Path) -> str | None:
    """Why the quarantined file at `source` (which exists) must not be moved, or None."""
    mode = os.lstat(source).st_mode
    if stat.S_ISLNK(mode):
        return (f"is a symbolic link (to {display(os.readlink(source))}); restore moves only "
                f"files: move it back by hand")
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    return None


def _relative_path(text: object) -> PurePosixPath | None:
    """`text` as a relative path with no `..`, `.` or empty part; None when it is not one."""
    if not isinstance(text, str) or not text or "\0" in text:
        return None
    path = PurePosixPath(text)
    if path.is_absolute() or any(part in ("..", ".") for part in text.split("/")):
        return None
    return path if path.parts else None


def _inside(path: Path, top: Path) -> bool:
    """Whether `path`, symbolic links followed, is `top` or below it (`top` is resolved)."""
    resolved = Path(os.path.realpath(path))
    return resolved == top or top in resolved.parents


def _shown(original: object) -> str:
    return display(os.path.normpath(original)) if isinstance(original, str) else repr(original)
