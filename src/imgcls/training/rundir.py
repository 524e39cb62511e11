"""Choosing and guarding a run directory."""

from __future__ import annotations

import re
from pathlib import Path

from imgcls.config import TrainConfig
from imgcls.errors import UserError

RUNS_ROOT = Path("runs")


def default_run_name(config: TrainConfig) -> str:
    data_name = Path(config.data.rstrip("/")).stem or "data"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{data_name}-{config.model}")


def prepare_run_dir(config: TrainConfig, *, overwrite: bool) -> Path:
    """The directory this run writes to, created. Never clobbers a finished run silently."""
    if config.output:
        run_dir = Path(config.output)
        if (run_dir / "model.safetensors").exists() and not overwrite:
            raise UserError(
                f"{run_dir} already holds a trained model; pass --overwrite to replace it, "
                f"--resume {run_dir} to continue it, or another --output"
            )
    else:
        run_dir = _first_free(RUNS_ROOT / default_run_name(config))
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _first_free(base: Path) -> Path:
    # runs/digits-resnet18, then runs/digits-resnet18-2, -3, ... like Ultralytics' exp2.
    if not base.exists():
        return base
    number = 2
    while base.with_name(f"{base.name}-{number}").exists():
        number += 1
    return base.with_name(f"{base.name}-{number}")
