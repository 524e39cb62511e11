"""A run directory: the names of the files in it (RunDir), which folder a run writes to, and
which model file a path means ("a model file or a run directory", resolve_model_path).

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
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from imgcls.config import TrainConfig
from imgcls.errors import UserError
from imgcls.utils.files import write_json

RUNS_ROOT = Path("runs")
RUN_MARKER = ".imgcls-run"
MODEL_FILE = "model.safetensors"


@dataclass(frozen=True)
class RunDir:
    """The files of one run, by what they hold. Every module names a run's files through
    this, so a file's name is written down once."""

    path: Path

    MARKER: ClassVar[str] = RUN_MARKER
    CONFIG: ClassVar[str] = "config.yaml"  # the resolved settings; `-c` repeats the run
    STATE: ClassVar[str] = "last.pt"  # what --resume continues from
    MODEL: ClassVar[str] = MODEL_FILE  # the best weights and their ModelCard
    METRICS: ClassVar[str] = "metrics.json"  # the best model on test (or val)
    HISTORY: ClassVar[str] = "history.jsonl"  # one record per epoch
    SPLIT: ClassVar[str] = "split.json"  # which item is in train, val and test
    SKIPPED: ClassVar[str] = "skipped.txt"  # files that could not be read
    REPORT: ClassVar[str] = "report.html"  # charts and mistakes.csv sit beside it
    TENSORBOARD: ClassVar[str] = "tensorboard"  # a folder, with --tensorboard
    # Cached features larger than the memory limit, unlinked as soon as they are mapped; a
    # hidden *.tmp, so resuming after a crash removes a leftover.
    FEATURE_SPILL: ClassVar[str] = ".features.tmp"

    @classmethod
    def of_model(cls, path: str | Path) -> RunDir:
        """The run a model path belongs to: the folder itself, or the model file's folder."""
        path = Path(path)
        return cls(path if path.is_dir() else path.parent)

    @property
    def marker(self) -> Path:
        return self.path / self.MARKER

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def state(self) -> Path:
        return self.path / self.STATE

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def history(self) -> Path:
        return self.path / self.HISTORY

    @property
    def split(self) -> Path:
        return self.path / self.SPLIT

    @property
    def skipped(self) -> Path:
        return self.path / self.SKIPPED

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def feature_spill(self) -> Path:
        return self.path / self.FEATURE_SPILL

    def predictions(self, part: str) -> Path:
        """The best model's predictions on `part` ("test" or "val")."""
        return self.path / f"{part}_predictions.csv"

    def evaluation(self, part: str, suffix: str) -> Path:
        """`imgcls eval`'s metrics (.json) and report (.html) for `part`."""
        return self.path / f"eval-{part}{suffix}"


def resolve_model_path(path: str | Path) -> Path:
    """The model file `path` names: a run directory means its model.safetensors."""
    path = Path(path)
    return RunDir(path).model if path.is_dir() else path


# Runs made before the marker existed: a config.yaml beside one of these.
_LEGACY_RUN_FILES = (RunDir.STATE, RunDir.MODEL, RunDir.HISTORY)


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
    write_json(RunDir(run_dir).marker, {"format": "imgcls-run", "version": 1,
                                      "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return run_dir


def is_run_dir(folder: Path) -> bool:
    """Whether `folder` holds an imgcls run (see the module's docstring)."""
    run = RunDir(folder)
    if run.marker.is_file():
        return True
    return run.config.is_file() and any(
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
