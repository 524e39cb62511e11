"""The quarantine manifest: <folder>/manifest.json, what `restore` may move back and where.

    {"version": 2, "root": "/abs/data/root",
     "entries": [{"original", "quarantined", "reason", "sha256"}, ...]}

`root` is the resolved data root; `original` is absolute, `quarantined` relative to the
manifest's folder (so the folder may move). Version 1 manifests have no `root`: it is read
off their entries (an original ends with its quarantined path). Paths are os.fsdecode
strings: a non-UTF-8 name is kept exactly (JSON escapes its surrogates).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from imgcls.data.doctor import display
from imgcls.errors import UserError
from imgcls.utils.files import write_json

MANIFEST_NAME = "manifest.json"
VERSION = 2
# Without these an entry can't even be named; a missing sha256 refuses only its entry.
ENTRY_KEYS = frozenset({"original", "quarantined"})


@dataclass
class Manifest:
    root: Path | None  # the data root the files came from; None: not recorded, not derivable
    entries: list[dict[str, Any]] = field(default_factory=list)


def read_manifest(path: Path) -> Manifest:
    """The manifest at `path`; a UserError naming it when it can't be read as one."""
    try:
        document = json.loads(path.read_text())
        entries = document["entries"]
        if not isinstance(entries, list) or not all(
                isinstance(entry, dict) and ENTRY_KEYS <= entry.keys() for entry in entries):
            raise ValueError("an entry lacks original or quarantined")
        root = document.get("root")
        if root is not None and not isinstance(root, str):
            raise ValueError("root is not a path")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{display(str(path))} is not a readable quarantine manifest "
                        f"({error}); restore its files by hand") from error
    return Manifest(Path(root) if root else _root_from_entries(entries), entries)


def write_manifest(path: Path, manifest: Manifest) -> None:
    root = None if manifest.root is None else str(manifest.root)
    write_json(path, {"version": VERSION, "root": root,
                      "entries": manifest.entries})


def _root_from_entries(entries: list[dict[str, Any]]) -> Path | None:
    """A version 1 manifest's root: the first original that ends with its quarantined path,
    less that path. Entries that disagree with it are refused on restore."""
    for entry in entries:
        original, quarantined = entry["original"], entry["quarantined"]
        if not (isinstance(original, str) and isinstance(quarantined, str)):
            continue
        parts = PurePosixPath(quarantined).parts
        original_path = Path(original)
        if parts and original_path.is_absolute() and original_path.parts[-len(parts):] == parts:
            return Path(*original_path.parts[:-len(parts)])
    return None
