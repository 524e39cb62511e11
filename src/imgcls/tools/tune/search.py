"""`tune()`: one worker's trials of a study, then the study's files and summary."""

from __future__ import annotations

import os
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from imgcls.config import OPTIMIZERS, TrainConfig
from imgcls.errors import UserError
from imgcls.tools.common import check_model_names
from imgcls.tools.tune.results import (
    TuneResult,
    best_so_far,
    describe_trial,
    print_summary,
    write_results,
)
from imgcls.tools.tune.space import PRUNERS, SEARCHABLE, TUNE_METRICS, SearchSpace
from imgcls.tools.tune.storage import DEFAULT_STORAGE, best_trial, open_study, redacted
from imgcls.tools.tune.trial import TrainFn, quiet_user_errors, run_trial, train_with_api
from imgcls.utils.extras import require


def tune(
    config: TrainConfig,
    *,
    trials: int,
    study_name: str,
    storage: str = DEFAULT_STORAGE,
    output: str | Path = "tune",
    metric: str = "val_f1_macro",
    space: SearchSpace | None = None,
    pruner: str = "median",
    sampler_seed: int | None = None,
    timeout: float | None = None,
    console: Console | None = None,
    train_fn: TrainFn | None = None,
) -> TuneResult:
    """Run `trials` trials of the study `study_name` in `storage` (creating it if new), each
    training `config` with the sampled settings into output/trial-<number>/; then write
    best.yaml, trials.csv and history.png for the whole study into `output`. `train_fn`
    (tests) replaces the training: it gets the trial's config and its on_epoch reporter."""
    require("imgcls tune", "tune", "optuna")
    import optuna

    console = console or Console(soft_wrap=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial instead
    space = space or SearchSpace()
    output = Path(output)
    base = _check(config, trials, metric, space, pruner, timeout)
    # Workers joining a study must search the same data, metric and models; their other
    # settings (threads, device) may differ.
    setup = {"data": base.data, "metric": metric, "models": list(space.models or [base.model])}
    study = open_study(storage, study_name, pruner, base.epochs, sampler_seed, setup)
    output.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]tune[/] study {study_name!r} in {redacted(storage)}: worker "
                  f"{os.getpid()} runs {trials} trial(s), searching {', '.join(space.searched)}; "
                  f"maximizing {metric}; trials in {output}/trial-<number>/")
    objective = partial(run_trial, base=base, space=space, output=output, metric=metric,
                        train_fn=train_fn or train_with_api)

    def announce(study: Any, trial: Any) -> None:
        console.print(describe_trial(trial, metric) + best_so_far(study, metric))

    # A failing trial (RuntimeError: out of memory at a big batch, ...) is recorded as FAIL and
    # the search goes on; a UserError (bad data path, ...) would fail every trial, so it stops.
    with quiet_user_errors():
        study.optimize(objective, n_trials=trials, timeout=timeout, catch=(RuntimeError,),
                       callbacks=[announce], gc_after_trial=True)
    result = TuneResult(study, output, metric, best_trial(study))
    result.files = write_results(study, output, metric)
    print_summary(result, console)
    return result


def _check(config: TrainConfig, trials: int, metric: str, space: SearchSpace, pruner: str,
           timeout: float | None) -> TrainConfig:
    if trials < 1:
        raise UserError(f"--trials must be at least 1; got {trials}")
    if timeout is not None and timeout <= 0:
        raise UserError(f"--timeout must be positive; got {timeout}")
    if metric not in TUNE_METRICS:
        raise UserError(f"unknown tuning metric {metric!r}; --metric takes one of: "
                        f"{', '.join(TUNE_METRICS)}")
    if pruner not in PRUNERS:
        raise UserError(f"unknown pruner {pruner!r}; --pruner takes one of: {', '.join(PRUNERS)}")
    unknown = sorted(set(space.fixed) - set(SEARCHABLE))
    if unknown:
        raise ValueError(f"not searchable: {unknown}")
    unknown = [name for name in space.optimizers if name not in OPTIMIZERS]
    if unknown or not space.optimizers:
        raise UserError(f"unknown optimizer(s) {', '.join(unknown) or '(none given)'} in "
                        f"--search-optimizers; it takes some of: {', '.join(OPTIMIZERS)}")
    if space.models is not None:
        check_model_names(space.models, "--search-models", allow_auto=True)
    for name in space.models or (config.model,):
        _check_fits(name, config.image_size)
    # Each trial's saved model is its kept epoch by the metric being tuned (early_stop).
    return replace(config, metric=metric, output=None).validate()


def _check_fits(model: str, image_size: int | None) -> None:
    """A model too big for --image-size fails now, not after hours of other trials."""
    from imgcls.models import get_spec
    from imgcls.training.auto_model import AUTO

    if model == AUTO:  # each trial resolves it from the data
        return
    spec = get_spec(model)
    if image_size is not None and image_size < spec.min_size:
        raise UserError(f"model {model} needs images of at least {spec.min_size} px; "
                        f"--image-size is {image_size}")
