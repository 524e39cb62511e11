"""Choosing and guarding a run directory.

A run directory is recognised by its marker file, RUN_MARKER (written when the run starts),
or, for runs made before the marker existed, by a config.yaml beside a last.pt,
model.safetensors or history.jsonl. `--output DIR` trains into DIR only when DIR is new or
empty: a folder of the user's own files is refused, and an earlier run is refused unless
--overwrite, which moves it aside whole (DIR -> DIR.old-<time>) rather than mixing the new
run's files into it or deleting any of its own.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from imgcls.config import TrainConfig
from imgcls.errors import UserError
from imgcls.io import write_json

RUNS_ROOT = Path("runs")
RUN_MARKER = ".imgcls-run"
_LEGACY_RUN_FILES = ("last.pt", "model.safetensors", "history.jsonl")


def default_run_name(config: TrainConfig) -> str:
    data_name = Path(config.data.rstrip("/")).stem or "data"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{data_name}-{config.model}")


def prepare_run_dir(config: TrainConfig, *, overwrite: bool) -> Path:
    """The directory this run writes to, created empty and marked as a run."""
    if config.output:
        run_dir = Path(config.output)
        _make_room(run_dir, overwrite=overwrite)
    else:
        run_dir = _first_free(RUNS_ROOT / default_run_name(config))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / RUN_MARKER, {"format": "imgcls-run", "version": 1,
                                      "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return run_dir


def is_run_dir(folder: Path) -> bool:
    """Whether `folder` holds an imgcls run (see the module's docstring)."""
    if (folder / RUN_MARKER).is_file():
        return True
    return (folder / "config.yaml").is_file() and any(
        (folder / name).is_file() for name in _LEGACY_RUN_FILES)


def _make_room(run_dir: Path, *, overwrite: bool) -> None:
    """Refuse `run_dir` unless it is new or empty; with `overwrite`, move a run aside."""
    if not os.path.lexists(run_dir):
        return
    if not run_dir.is_dir():
        raise UserError(f"--output {run_dir} is a file, not a folder; choose a new folder")
    if not any(run_dir.iterdir()):
        return
    if not is_run_dir(run_dir):
        raise UserError(f"--output {run_dir} is not empty and holds no imgcls run (no "
                        f"{RUN_MARKER}); choose a new or empty folder, its files stay as they are")
    if not overwrite:
        raise UserError(f"{run_dir} already holds a run; pass --resume {run_dir} to continue "
                        f"it, --overwrite to move it aside and start again, or another --output")
    aside = _first_free(run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}"))
    try:
        run_dir.rename(aside)
    except OSError as error:
        raise UserError(f"--overwrite could not move the earlier run {run_dir} aside to "
                        f"{aside.name} ({error.strerror}); move or remove it yourself") from None
    print(f"earlier run moved aside: {run_dir} -> {aside}")


def _first_free(base: Path) -> Path:
    # runs/digits-resnet18, then runs/digits-resnet18-2, -3, ... like Ultralytics' exp2.
    if not os.path.lexists(base):
        return base
    number = 2
    while os.path.lexists(base.with_name(f"{base.name}-{number}")):
        number += 1
    return base.with_name(f"{base.name}-{number}")
