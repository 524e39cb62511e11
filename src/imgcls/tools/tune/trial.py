"""One trial: its settings sampled, its run trained, its metric reported to the pruner
after every epoch."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from imgcls.config import TrainConfig
from imgcls.errors import UserError
from imgcls.modelfile.rundir import RunDir
from imgcls.tools.common import first_line
from imgcls.tools.tune.space import SearchSpace


class EpochReporter:
    """The `on_epoch` callback of one trial's run: reports the metric to Optuna after each
    epoch and stops the run (optuna.TrialPruned) when the pruner says so."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.best = float("nan")  # best finite value seen
        self.epochs = 0

    def __call__(self, record: dict[str, Any]) -> None:
        import optuna

        value = float(record[self.metric])
        epoch = int(record["epoch"])
        self.epochs += 1
        if math.isfinite(value):
            self.best = value if math.isnan(self.best) else max(self.best, value)
            self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: {self.metric} {value:.4f}")


# Trains a trial's config, reporting each epoch to its EpochReporter; tests pass a fake.
TrainFn = Callable[[TrainConfig, "EpochReporter"], Path]


def run_trial(trial: Any, *, base: TrainConfig, space: SearchSpace, output: Path, metric: str,
              train_fn: TrainFn) -> float:
    """The objective: train `base` with this trial's sampled settings into
    output/trial-<number>/; the best finite `metric` of its epochs (NaN: none)."""
    trial.set_user_attr("worker", os.getpid())
    trial.set_user_attr("host", socket.gethostname())
    run_dir = output / f"trial-{trial.number}"
    if RunDir(run_dir).model.exists():
        raise UserError(f"{run_dir} holds a trial of another study; pass another --output "
                        f"(or the --storage and --study that wrote it)")
    chosen = space.sample(trial, base)
    run_config = replace(base, **chosen, output=str(run_dir))
    run_config.validate()
    trial.set_user_attr("config", run_config.to_dict())
    reporter = EpochReporter(trial, metric)
    try:  # optuna.TrialPruned from the reporter ends the run and marks the trial PRUNED
        train_fn(run_config, reporter)
    except RuntimeError as error:  # out of memory, a numerical failure: this trial only
        trial.set_user_attr("error", first_line(error, default="RuntimeError"))
        raise
    if math.isnan(reporter.best):
        trial.set_user_attr("error", f"no finite {metric} (no validation split?)")
    return reporter.best


def train_with_api(config: TrainConfig, on_epoch: EpochReporter) -> Path:
    import imgcls

    values = config.to_dict()
    return imgcls.train(data=values.pop("data"), model=values.pop("model"), on_epoch=on_epoch,
                        show_progress=False, **values)


class _HideUserErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            return False
        # Its follow-up; our own line per trial names a failed trial and why.
        return not record.getMessage().endswith("failed with value None.")


@contextlib.contextmanager
def quiet_user_errors() -> Iterator[None]:
    """Optuna logs a failed trial's traceback; a UserError is the CLI's one line instead."""
    handlers = logging.getLogger("optuna").handlers
    hide = _HideUserErrors()
    for handler in handlers:
        handler.addFilter(hide)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(hide)
