"""Move bad files out of a data set, and back: never delete, never overwrite.

`quarantine` moves the files the doctor found broken into a folder, keeping their path
relative to the data root, and lists them in <folder>/manifest.json:
{"version": 1, "entries": [{original, quarantined, reason, sha256}]}; `original` is
absolute, `quarantined` relative to the manifest's folder (so the folder may move). The
manifest is written before any file moves, so an interrupted run can still be restored.
`restore` moves each file back after checking its sha256, keeps in the manifest what it
could not restore, and deletes the manifest once it is empty.

Paths in the manifest are os.fsdecode strings: a non-UTF-8 name is kept exactly (JSON
escapes its surrogates, and Python's json reads them back).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from imgcls.data.doctor import FILE_ERROR_KINDS, DoctorReport, Finding, display
from imgcls.errors import UserError
from imgcls.io import write_json

MANIFEST_NAME = "manifest.json"
_OUTSIDE = "_outside_root"  # where files that lie outside the data root go (CSV sources)
_HASH_CHUNK = 1 << 20


def quarantine(report: DoctorReport, root: str | Path, target: str | Path) -> Path:
    """Move every file with a file error in `report` into `target`; return the manifest.

    Raises UserError, before anything moves, when `target` lies inside the data (the
    quarantined files would be scanned as a class) or already holds a file of the same
    name. A second quarantine into the same folder adds to its manifest.
    """
    root, target = Path(root).resolve(), Path(target).expanduser().resolve()
    _refuse_inside_data(root, target)
    manifest = target / MANIFEST_NAME
    entries = _read_entries(manifest) if manifest.exists() else []
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
    _write_entries(manifest, entries + planned)
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

    A file is not restored when something now lies at its original path, or when its
    bytes changed in quarantine (sha256); those stay listed and quarantined, and a
    UserError names the first after the others are restored. The manifest is deleted once
    every entry is back; the folders the quarantine made go as they empty.
    """
    manifest = Path(manifest).expanduser().resolve()
    if manifest.is_dir():
        manifest = manifest / MANIFEST_NAME
    if not manifest.is_file():
        raise UserError(f"no quarantine manifest at {display(str(manifest))}; pass the "
                        f"{MANIFEST_NAME} that `imgcls data check --quarantine DIR` wrote")
    entries = _read_entries(manifest)
    remaining: list[dict[str, Any]] = []
    refusals: list[str] = []
    restored = done = 0
    try:
        for entry in entries:
            refusal = _restore_one(entry, manifest.parent)
            done += 1
            if refusal is None:
                restored += 1
            elif refusal:  # "" means: already back in place, nothing to keep
                remaining.append(entry)
                refusals.append(refusal)
    finally:
        # Entries not reached (an unexpected error) stay listed with the refused ones.
        _finish_manifest(manifest, remaining + entries[done:])
    if refusals:
        raise UserError(f"restored {restored} file(s); {len(refusals)} left in quarantine "
                        f"and in {display(str(manifest))}, first: {refusals[0]}")
    return restored


def _restore_one(entry: dict[str, Any], folder: Path) -> str | None:
    """None when restored; otherwise why not ("" when it already is back)."""
    original, quarantined = Path(entry["original"]), folder / entry["quarantined"]
    if not os.path.lexists(quarantined):
        if original.is_file() and _sha256(original) == entry["sha256"]:
            return ""  # an interrupted quarantine never moved it
        return f"{display(str(quarantined))} is missing"
    if os.path.lexists(original):
        return (f"{display(str(original))} exists again; move it away and run "
                f"`imgcls data restore` again")
    if entry["sha256"] is not None and _sha256(quarantined) != entry["sha256"]:
        return f"{display(str(quarantined))} changed in quarantine (sha256 differs)"
    _move_without_overwrite(quarantined, original)
    _remove_empty_parents(quarantined, folder)
    return None


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
        return Path(_OUTSIDE, *path.parts[1:])


def _move_without_overwrite(source: Path, destination: Path) -> None:
    """Move a file; FileExistsError rather than replace what is at `destination`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Fails atomically when destination exists; a symbolic link moves as itself.
        os.link(source, destination, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:  # another file system, or no hard links: copy exclusively
        with open(source, "rb") as reader, open(destination, "xb") as writer:
            shutil.copyfileobj(reader, writer)
        shutil.copystat(source, destination)
    os.unlink(source)


def _read_entries(manifest: Path) -> list[dict[str, Any]]:
    try:
        document = json.loads(manifest.read_text())
        entries = document["entries"]
        keys = {"original", "quarantined", "reason", "sha256"}
        if not all(isinstance(e, dict) and keys <= e.keys() for e in entries):
            raise ValueError("an entry lacks original, quarantined, reason or sha256")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{display(str(manifest))} is not a readable quarantine manifest "
                        f"({error}); restore its files by hand") from error
    return entries


def _write_entries(manifest: Path, entries: list[dict[str, Any]]) -> None:
    write_json(manifest, {"version": 1, "entries": entries})


def _finish_manifest(manifest: Path, remaining: list[dict[str, Any]]) -> None:
    if remaining:
        _write_entries(manifest, remaining)
        return
    manifest.unlink()


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
    with open(path, "rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
