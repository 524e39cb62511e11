"""Atomic, durable file writes: a reader (or a crash) never sees a half-written file.

A file is written to a temporary name beside its target, flushed to disk (fsync), renamed
over the target in one step (os.replace), and then the folder is flushed too, so after a
crash either the old file or the whole new one is there. The temporary file is given the
mode a plain open() would give (0o666 less the umask), not mkstemp's 0o600: a model
written by one user must stay readable by a container running as another.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` in one step.

    Whatever the caller writes there is fsynced before the rename and the folder after it;
    until then a previous `target` stays whole.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        os.close(handle)
        yield temporary
        # After the writer: some (safetensors) write a file of their own at the path.
        os.chmod(temporary, default_file_mode())
        fsync_file(temporary)
        os.replace(temporary, target)
        fsync_folder(target.parent)
    finally:
        temporary.unlink(missing_ok=True)


def default_file_mode() -> int:
    """0o666 less the process's umask: the mode open() gives a new file."""
    return 0o666 & ~current_umask()


def current_umask() -> int:
    """The umask, read without changing it where the system tells (Linux /proc)."""
    umask = _umask_from_proc()
    if umask is not None:
        return umask
    # Setting and restoring is the only portable way. The lock keeps our own threads out of
    # the window; another library's thread creating a file in it gets the strict 0o077.
    with _UMASK_LOCK:
        umask = os.umask(0o077)
        os.umask(umask)
    return umask


def _umask_from_proc() -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None  # not Linux, or a kernel older than 4.7


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


def fsync_folder(folder: str | Path) -> None:
    """Make a rename in `folder` durable. Some systems (Windows) can't open a folder: skip."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:  # a file system that does not sync folders
        pass
    finally:
        os.close(handle)


def write_text(target: str | Path, text: str) -> None:
    # File names that are not valid UTF-8 reach us as surrogate escapes; write them as
    # backslash escapes rather than fail the whole run over one name.
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8", errors="backslashreplace")


def write_json(target: str | Path, document: Any) -> None:
    write_text(target, json.dumps(document, indent=2) + "\n")


def append_line(target: str | Path, line: str) -> None:
    """Append one line and flush it to disk: each epoch's history survives a crash."""
    with open(target, "a") as stream:
        stream.write(line.rstrip("\n") + "\n")
        stream.flush()
        os.fsync(stream.fileno())
