"""Move bad files out of a data set, and back: never delete, never overwrite.

`quarantine` moves the files the doctor found broken into a folder, keeping their path
relative to the data root, and lists them, with the root, in <folder>/manifest.json (see
quarantine_manifest). The manifest is written before any file moves, so an interrupted run
can still be restored. `restore` trusts the manifest no further than restore_checks
allows: only files inside the manifest's folder go back, only to their place inside the
data root, only with a matching sha256 and never over an existing file. It keeps in the
manifest what it could not restore, and deletes the manifest once it is empty.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from imgcls.data.doctor import FILE_ERROR_KINDS, DoctorReport, Finding, display
from imgcls.data.quarantine_manifest import (
    MANIFEST_NAME,
    Manifest,
    read_manifest,
    write_manifest,
)
from imgcls.data.restore_checks import OUTSIDE_ROOT, PlannedMove, plan_move, source_problem
from imgcls.errors import UserError

__all__ = ["MANIFEST_NAME", "RestoreRefused", "files_to_quarantine", "quarantine", "restore"]

_HASH_CHUNK = 1 << 20
# Open without following a symbolic link at the last step (0 where the system has no such flag).
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class RestoreRefused(UserError):
    """Some entries were not restored; `refusals` says why for each, one line apiece."""

    def __init__(self, message: str, refusals: list[str]) -> None:
        super().__init__(message)
        self.refusals = refusals


def quarantine(report: DoctorReport, root: str | Path, target: str | Path) -> Path:
    """Move every file with a file error in `report` into `target`; return the manifest.

    Raises UserError, before anything moves, when `target` lies inside the data (the
    quarantined files would be scanned as a class), already holds a file of the same
    name, or holds the quarantine of another data root. A second quarantine of the same
    data into the same folder adds to its manifest.
    """
    root, target = Path(root).resolve(), Path(target).expanduser().resolve()
    _refuse_inside_data(root, target)
    manifest = target / MANIFEST_NAME
    earlier = read_manifest(manifest) if manifest.exists() else Manifest(root)
    if earlier.root not in (None, root):
        raise UserError(f"{display(str(target))} holds the quarantine of "
                        f"{display(str(earlier.root))}; choose another --quarantine folder "
                        f"for {display(str(root))}")
    moves = [(Path(f.path), target / _relative_to_root(Path(f.path), root), f.reason)
             for f in files_to_quarantine(report)]
    taken = [destination for _, destination, _ in moves if os.path.lexists(destination)]
    if taken:
        raise UserError(f"{display(str(taken[0]))} already exists ({len(taken)} file(s) "
                        f"would be overwritten); choose an empty --quarantine folder or "
                        f"restore the earlier quarantine first")
    planned = [{"original": str(source), "quarantined": destination.relative_to(target)
                .as_posix(), "reason": reason, "sha256": _sha256_or_none(source)}
               for source, destination, reason in moves]
    # Written first: if a move fails halfway, restore still knows where everything went.
    write_manifest(manifest, Manifest(root, earlier.entries + planned))
    for source, destination, _ in moves:
        _move_without_overwrite(source, destination)
    return manifest


def files_to_quarantine(report: DoctorReport) -> list[Finding]:
    """The findings whose file is broken and still there (a missing file has nothing to move)."""
    return [finding for finding in report.problems
            if finding.kind in FILE_ERROR_KINDS and finding.severity == "error"
            and Path(finding.path).is_file()]


def restore(manifest: str | Path) -> int:
    """Move the files listed in `manifest` back; return how many were restored.

    An entry that restore_checks refuses, whose file changed in quarantine (sha256), or
    whose original path is taken again, stays quarantined and listed; RestoreRefused names
    each (after the others are restored). The manifest is deleted once every entry is
    back; the folders the quarantine made go as they empty.
    """
    path = _manifest_path(manifest)
    document = read_manifest(path)
    remaining: list[dict[str, Any]] = []
    refusals: list[str] = []
    restored = done = 0
    try:
        for entry in document.entries:
            refusal = _restore_one(entry, path.parent, document.root)
            done += 1
            if refusal is None:
                restored += 1
            elif refusal:  # "" means: already back in place, nothing to keep
                remaining.append(entry)
                refusals.append(refusal)
    finally:
        # Entries not reached (an unexpected error) stay listed with the refused ones.
        _finish_manifest(path, Manifest(document.root, remaining + document.entries[done:]))
    if refusals:
        raise RestoreRefused(f"restored {restored} file(s); {len(refusals)} left in quarantine "
                             f"and in {display(str(path))}, first: {refusals[0]}", refusals)
    return restored


def _manifest_path(manifest: str | Path) -> Path:
    path = Path(manifest).expanduser().resolve()
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise UserError(f"no quarantine manifest at {display(str(path))}; pass the "
                        f"{MANIFEST_NAME} that `imgcls data check --quarantine DIR` wrote")
    return path


def _restore_one(entry: dict[str, Any], folder: Path, root: Path | None) -> str | None:
    """None when restored; otherwise why not ("" when it already is back)."""
    move = plan_move(entry, folder, root)
    if isinstance(move, str):
        return move
    name = display(str(move.source))
    if not os.path.lexists(move.source):
        if _is_back(move):
            return ""  # an interrupted quarantine never moved it
        return f"{name} is missing"
    problem = source_problem(move.source)
    if problem:
        return f"{name} {problem}"
    if os.path.lexists(move.destination):
        return (f"{display(str(move.destination))} exists again; move it away and run "
                f"`imgcls data restore` again")
    if _sha256(move.source) != move.sha256:
        return f"{name} changed in quarantine (sha256 differs)"
    _move_without_overwrite(move.source, move.destination)
    _remove_empty_parents(move.source, folder)
    return None


def _is_back(move: PlannedMove) -> bool:
    try:
        return source_problem(move.destination) is None and _sha256(move.destination) == move.sha256
    except OSError:
        return False


def _refuse_inside_data(root: Path, target: Path) -> None:
    try:
        inside = target.relative_to(root)
    except ValueError:
        return
    # A hidden folder is allowed: the indexer and the doctor skip it.
    if not inside.parts or not inside.parts[0].startswith("."):
        raise UserError(f"quarantine folder {display(str(target))} is inside the data "
                        f"{display(str(root))}; its files would be read as a class: choose "
                        f"a folder outside it (or a hidden one, like {root.name}/.quarantine)")


def _relative_to_root(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:  # a CSV may list files anywhere: keep their whole path
        return Path(OUTSIDE_ROOT, *path.parts[1:])


def _move_without_overwrite(source: Path, destination: Path) -> None:
    """Move a file; FileExistsError rather than replace what is at `destination`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Fails atomically when destination exists; a symbolic link moves as itself.
        os.link(source, destination, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:  # another file system, or no hard links: copy exclusively
        _copy_exclusively(source, destination)
    os.unlink(source)


def _copy_exclusively(source: Path, destination: Path) -> None:
    """A copy at `destination`, which must not exist; a symbolic link is copied as a link."""
    if os.path.islink(source):
        os.symlink(os.readlink(source), destination)  # fails when destination exists
        return
    with open(os.open(source, os.O_RDONLY | _NOFOLLOW), "rb") as reader, \
            open(destination, "xb") as writer:
        shutil.copyfileobj(reader, writer)
    shutil.copystat(source, destination)


def _finish_manifest(path: Path, remaining: Manifest) -> None:
    if remaining.entries:
        write_manifest(path, remaining)
        return
    path.unlink()


def _remove_empty_parents(path: Path, top: Path) -> None:
    """The folders quarantine made for `path`, up to (not including) `top`, once empty."""
    for folder in path.parents:
        if folder == top or top not in folder.parents or os.listdir(folder):
            return
        folder.rmdir()


def _sha256_or_none(path: Path) -> str | None:
    """None for a file that can't be read (it can still be moved, unchecked)."""
    try:
        return _sha256(path)
    except OSError:
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(os.open(path, os.O_RDONLY | _NOFOLLOW), "rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
