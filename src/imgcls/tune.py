"""Hyperparameter search with Optuna: `imgcls tune`.

One study lives in an Optuna storage (an SQLite file by default, PostgreSQL to share it
between machines). Every `imgcls tune` process on the same storage and study name is one
worker: it runs its own `trials` trials, each a normal imgcls run in DIR/trial-<number>/,
reporting the chosen validation metric after every epoch so the pruner can stop poor trials
early. At the end each worker writes, from the whole study (every worker's trials):

  DIR/best.yaml     the best trial's full TrainConfig: `imgcls train -c DIR/best.yaml` repeats it
  DIR/trials.csv    one row per trial: number, state, value, searched settings, duration
  DIR/history.png   the value of every trial and the best so far
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from imgcls.config import AUGMENTS, OPTIMIZERS, TrainConfig
from imgcls.csv_safe import safe_values
from imgcls.errors import UserError
from imgcls.io import atomic_path, write_text
from imgcls.rundir import RunDir

# What a trial may sample; a setting the user fixes with a flag is left out.
SEARCHABLE = ("model", "optimizer", "lr", "weight_decay", "batch_size", "dropout", "augment")
TUNE_METRICS = ("val_f1_macro", "val_acc")
PRUNERS = ("median", "hyperband", "none")
BATCH_SIZES = (32, 64, 128, 256)
WEIGHT_DECAY_RANGE = (1e-6, 1e-2)  # log-uniform
DROPOUT_RANGE = (0.0, 0.5)
# Optimizers whose good learning rates lie in the same range share one lr parameter
# (lr_<family>): the sampler then learns each range separately. The ranges bracket
# config.DEFAULT_LR, the rates that train the registry's networks well from scratch.
LR_FAMILY = {"sgd": "sgd", "momentum": "sgd", "nesterov": "sgd", "adam": "adam",
             "adamw": "adam", "adagrad": "adagrad", "rmsprop": "rmsprop"}
LR_RANGES = {"sgd": (1e-3, 0.5), "adam": (1e-4, 1e-2), "adagrad": (1e-3, 0.1),
             "rmsprop": (1e-5, 3e-3)}
# Database drivers SQLAlchemy imports for a storage URL, and the packages that hold them.
_DRIVERS = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "pymysql": "pymysql",
            "MySQLdb": "mysqlclient"}
DEFAULT_STORAGE = "sqlite:///tune.db"  # relative to the current directory
SQLITE_TIMEOUT_S = 60  # several workers write one SQLite file: wait for its lock this long


@dataclass(frozen=True)
class SearchSpace:
    """What each trial samples. `models` None: the base config's model, fixed."""

    models: tuple[str, ...] | None = None
    optimizers: tuple[str, ...] = OPTIMIZERS
    fixed: frozenset[str] = frozenset()  # searchable settings the user fixed with a flag

    @property
    def searched(self) -> tuple[str, ...]:
        return tuple(name for name in SEARCHABLE
                     if name not in self.fixed and (name != "model" or self.models))

    def sample(self, trial: Any, base: TrainConfig) -> dict[str, Any]:
        """The TrainConfig settings this trial tries (only the searched ones)."""
        searched = self.searched
        chosen: dict[str, Any] = {}
        if "model" in searched:
            chosen["model"] = trial.suggest_categorical("model", list(self.models))
        if "optimizer" in searched:
            chosen["optimizer"] = trial.suggest_categorical("optimizer", list(self.optimizers))
        if "lr" in searched:
            family = LR_FAMILY[chosen.get("optimizer", base.optimizer)]
            low, high = LR_RANGES[family]
            chosen["lr"] = trial.suggest_float(f"lr_{family}", low, high, log=True)
        if "weight_decay" in searched:
            chosen["weight_decay"] = trial.suggest_float("weight_decay", *WEIGHT_DECAY_RANGE,
                                                         log=True)
        if "batch_size" in searched:
            chosen["batch_size"] = trial.suggest_categorical("batch_size", list(BATCH_SIZES))
        if "dropout" in searched:
            chosen["dropout"] = trial.suggest_float("dropout", *DROPOUT_RANGE)
        if "augment" in searched:
            chosen["augment"] = trial.suggest_categorical("augment", list(AUGMENTS))
        return chosen


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


@dataclass
class TuneResult:
    study: Any  # optuna.Study
    output: Path
    metric: str
    best: Any | None  # optuna.trial.FrozenTrial; None until some trial completes
    files: dict[str, Path] = field(default_factory=dict)


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
    train_fn: Callable[[TrainConfig, EpochReporter], Path] | None = None,
) -> TuneResult:
    """Run `trials` trials of the study `study_name` in `storage` (creating it if new), each
    training `config` with the sampled settings into output/trial-<number>/; then write
    best.yaml, trials.csv and history.png for the whole study into `output`. `train_fn`
    (tests) replaces the training: it gets the trial's config and its on_epoch reporter."""
    try:
        import optuna
    except ImportError:
        raise UserError("imgcls tune needs Optuna; install it: pip install 'optuna>=3.6'") from None

    console = console or Console(soft_wrap=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial instead
    space = space or SearchSpace()
    output = Path(output)
    base = _check(config, trials, metric, space, pruner, timeout)
    # Workers joining a study must search the same data, metric and models; their other
    # settings (threads, device) may differ.
    setup = {"data": base.data, "metric": metric, "models": list(space.models or [base.model])}
    study = _open_study(storage, study_name, pruner, base.epochs, sampler_seed, setup)
    output.mkdir(parents=True, exist_ok=True)
    train_fn = train_fn or _train_with_api
    worker = os.getpid()
    console.print(f"[bold]tune[/] study {study_name!r} in {_redacted(storage)}: worker {worker} "
                  f"runs {trials} trial(s), searching {', '.join(space.searched)}; "
                  f"maximizing {metric}; trials in {output}/trial-<number>/")

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker)
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
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "RuntimeError"
            trial.set_user_attr("error", reason)
            raise
        if math.isnan(reporter.best):
            trial.set_user_attr("error", f"no finite {metric} (no validation split?)")
        return reporter.best

    def announce(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        console.print(_describe_trial(trial, metric) + _best_so_far(study, metric))

    # A failing trial (RuntimeError: out of memory at a big batch, ...) is recorded as FAIL and
    # the search goes on; a UserError (bad data path, ...) would fail every trial, so it stops.
    with _quiet_user_errors():
        study.optimize(objective, n_trials=trials, timeout=timeout, catch=(RuntimeError,),
                       callbacks=[announce], gc_after_trial=True)
    result = TuneResult(study, output, metric, _best_trial(study))
    result.files = write_results(study, output, metric)
    print_summary(result, console)
    return result


class _HideUserErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            return False
        # Its follow-up; our own line per trial names a failed trial and why.
        return not record.getMessage().endswith("failed with value None.")


@contextlib.contextmanager
def _quiet_user_errors() -> Iterator[None]:
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


def _train_with_api(config: TrainConfig, on_epoch: EpochReporter) -> Path:
    import imgcls

    values = config.to_dict()
    return imgcls.train(data=values.pop("data"), model=values.pop("model"), on_epoch=on_epoch,
                        show_progress=False, **values)


def _check(config: TrainConfig, trials: int, metric: str, space: SearchSpace, pruner: str,
           timeout: float | None) -> TrainConfig:
    from imgcls.models import get_spec

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
    models = list(space.models) if space.models is not None else [config.model]
    if space.models is not None and not models:
        raise UserError("--search-models is empty; pass e.g. --search-models lenet5,resnet18")
    repeated = sorted({name for name in models if models.count(name) > 1})
    if repeated:
        raise UserError(f"--search-models names {', '.join(repeated)} more than once")
    for name in models:  # a typo is caught now, not after hours of other trials
        if name == "auto":  # each trial resolves it from the data
            continue
        spec = get_spec(name)
        if config.image_size is not None and config.image_size < spec.min_size:
            raise UserError(f"model {name} needs images of at least {spec.min_size} px; "
                            f"--image-size is {config.image_size}")
    # Each trial's saved model is its best epoch by the metric being tuned.
    return replace(config, metric=metric, output=None).validate()


def open_storage(url: str) -> Any:
    """An Optuna storage for `url`; SQLite waits for other workers' locks instead of failing.
    A mistake (no such driver, an unreachable server, a bad path) is a UserError."""
    import optuna
    import sqlalchemy.exc

    if "://" not in url:
        raise UserError(f"--storage {url!r} is not a database URL; pass e.g. "
                        f"sqlite:///tune.db or postgresql://user:password@host/database")
    connect_args = {"timeout": SQLITE_TIMEOUT_S} if url.startswith("sqlite") else {}
    last_error: Exception | None = None
    for attempt in range(5):
        try:
            # A heartbeat marks a trial whose worker died (killed, machine lost) as FAIL
            # when another worker next starts a trial, instead of RUNNING forever.
            with warnings.catch_warnings():  # heartbeat_interval is "experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs={"connect_args": connect_args},
                    heartbeat_interval=60, grace_period=180,
                )
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as error:
            # Workers starting together race to create the tables of a new database ("table
            # ... already exists", "UNIQUE constraint failed: alembic_version"): the loser
            # finds them made on its next try.
            last_error = error
            racing = isinstance(error, sqlalchemy.exc.IntegrityError) or any(
                text in str(error) for text in ("already exists", "locked"))
            if not racing:
                break
            time.sleep(0.2 * (attempt + 1))
        except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError,
                ImportError, ValueError) as error:
            last_error = error.__cause__ if isinstance(error.__cause__, ImportError) else error
            break
    reason = str(last_error).strip().splitlines()[0] if last_error else "unknown error"
    hint = ""
    if isinstance(last_error, ImportError):
        package = _DRIVERS.get(last_error.name or "", last_error.name)
        hint = f"; install its driver: pip install {package}" if package else ""
    elif url.startswith("sqlite"):
        hint = "; the folder of a sqlite:///path file must exist"
    raise UserError(f"cannot open --storage {_redacted(url)}: {reason}{hint}")


def _redacted(url: str) -> str:
    """The URL without its password, fit to print."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy parses: nothing to hide
        return url


def make_pruner(name: str, epochs: float) -> Any:
    import optuna

    if name == "median":
        # Prune a trial whose metric after an epoch is below the median of the finished
        # trials at that epoch; never after the first epoch, which says little yet (steps
        # are epochs, counted from 1: the earliest pruning step is n_warmup_steps).
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(1, math.ceil(epochs)), reduction_factor=3)
    return optuna.pruners.NopPruner()


def _open_study(storage_url: str, name: str, pruner: str, epochs: int, seed: int | None,
                setup: dict[str, Any]) -> Any:
    import optuna

    storage = open_storage(storage_url)
    # Each worker samples with its own seed: workers seeded alike would try the same
    # settings. constant_liar keeps them apart while trials run (default since Optuna 5).
    seed = seed if seed is not None else (os.getpid() * 2_654_435_761) % 2**32
    with warnings.catch_warnings():  # "experimental" in Optuna 3 and 4
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                    sampler=sampler, pruner=make_pruner(pruner, epochs),
                                    load_if_exists=True)
    except ValueError as error:  # optuna: an existing study of another direction
        raise UserError(f"study {name!r} in {_redacted(storage_url)}: {error}; "
                        f"pass another --study") from None
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise UserError(f"study {name!r} in {_redacted(storage_url)} minimizes; imgcls tune "
                        f"maximizes: pass another --study")
    known = study.user_attrs.get("imgcls")
    if known is None:
        study.set_user_attr("imgcls", setup)
    elif known != setup:
        raise UserError(
            f"study {name!r} in {_redacted(storage_url)} searches data {known['data']!r}, "
            f"models {','.join(known['models'])}, metric {known['metric']}; this worker "
            f"would search {setup['data']!r}, {','.join(setup['models'])}, {setup['metric']}: "
            f"pass another --study (or the same settings to join it)"
        )
    return study


def _best_trial(study: Any) -> Any | None:
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


# --- output ------------------------------------------------------------------------------

CSV_COLUMNS = ("number", "state", "value", "epochs", *SEARCHABLE, "duration_s", "worker",
               "host", "run_dir", "error")


def _row(trial: Any) -> dict[str, Any]:
    config = trial.user_attrs.get("config", {})
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value,
        "epochs": len(trial.intermediate_values),
        **{name: config.get(name) for name in SEARCHABLE},
        "duration_s": None if duration is None else round(duration, 2),
        "worker": trial.user_attrs.get("worker"),
        "host": trial.user_attrs.get("host"),
        "run_dir": config.get("output"),
        "error": trial.user_attrs.get("error", ""),
    }


def write_results(study: Any, output: Path, metric: str) -> dict[str, Path]:
    """best.yaml (when a trial completed), trials.csv and history.png, for the whole study."""
    output.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    files = {"trials.csv": output / "trials.csv", "history.png": output / "history.png"}
    write_text(files["trials.csv"], _csv(trials))
    _plot(trials, metric, files["history.png"])
    best = _best_trial(study)
    if best is not None:
        files["best.yaml"] = output / "best.yaml"
        write_text(files["best.yaml"], best_config(best).to_yaml())
    return files


def best_config(trial: Any) -> TrainConfig:
    """The full TrainConfig a trial trained with, output cleared (a new run directory)."""
    return TrainConfig.from_dict({**trial.user_attrs["config"], "output": None},
                                 origin=f"trial {trial.number}")


def _csv(trials: Iterable[Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for trial in trials:
        writer.writerow(safe_values(_row(trial)))
    return buffer.getvalue()


def _plot(trials: list[Any], metric: str, path: Path) -> None:
    """Optimization history: each finished trial's value, pruned ones at their last value,
    and the best so far."""
    # A bare Figure renders with Agg and leaves pyplot's global backend alone.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    complete = [t for t in trials if t.state.name == "COMPLETE" and _finite(t.value)]
    pruned = [t for t in trials if t.state.name == "PRUNED" and t.intermediate_values]
    if complete:
        axes.scatter([t.number for t in complete], [t.value for t in complete], s=30,
                     color="C0", label="complete", zorder=3)
        best, steps, values = -math.inf, [], []
        for trial in sorted(complete, key=lambda t: t.number):
            best = max(best, trial.value)
            steps.append(trial.number)
            values.append(best)
        axes.step(steps, values, where="post", color="C3", label="best so far")
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        axes.scatter([t.number for t in pruned], last, s=30, marker="x", color="0.5",
                     label="pruned (last epoch)", zorder=3)
    if not complete and not pruned:
        axes.text(0.5, 0.5, "no finished trial yet", transform=axes.transAxes, ha="center")
    else:
        axes.legend(loc="best")
    axes.set_xlabel("trial")
    axes.set_ylabel(metric)
    axes.set_title(f"optimization history ({len(trials)} trials)")
    axes.grid(True, alpha=0.3)
    with atomic_path(path) as temporary:  # another worker may be writing it too
        figure.savefig(temporary, dpi=100, format="png")


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _settings(trial: Any) -> str:
    config = trial.user_attrs.get("config", {})
    parts = []
    for name in SEARCHABLE:
        value = config.get(name)
        if isinstance(value, float):
            value = f"{value:.3g}"
        parts.append(f"{name} {value}")
    return ", ".join(parts)


def _describe_trial(trial: Any, metric: str) -> str:
    state = trial.state.name.lower()
    value = f" {metric} {trial.value:.4f}" if _finite(trial.value) else ""
    error = trial.user_attrs.get("error")
    reason = f" ({error})" if error and state == "fail" else ""
    duration = f", {trial.duration.total_seconds():.1f}s" if trial.duration else ""
    return f"trial {trial.number} {state}{value}{reason}{duration}: {_settings(trial)}"


def _best_so_far(study: Any, metric: str) -> str:
    best = _best_trial(study)
    return "" if best is None else f"; best: trial {best.number} ({best.value:.4f})"


def print_summary(result: TuneResult, console: Console, top: int = 10) -> None:
    """The best `top` trials of the study, its counts by state, and where the files are."""
    trials = result.study.get_trials(deepcopy=False)
    ranked = sorted((t for t in trials if _finite(t.value)),
                    key=lambda t: (t.state.name != "COMPLETE", -t.value, t.number))
    table = Table(title=f"study {result.study.study_name}: best {min(top, len(ranked))} of "
                        f"{len(trials)} trials by {result.metric}", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False)
    # Only what varies between trials, so the table fits an 80-column terminal.
    searched = [name for name in SEARCHABLE if len({_row(t)[name] for t in trials}) > 1]
    columns = ["number", "state", "value", *searched, "duration_s"]
    headings = {"number": "#", "weight_decay": "wd", "batch_size": "batch", "dropout": "drop",
                "duration_s": "s"}
    for column in columns:
        text = column in ("state", "model", "optimizer", "augment")
        table.add_column(headings.get(column, column), no_wrap=True, min_width=2,
                         justify="left" if text else "right")
    styles = {"value": ".4f", "lr": ".1e", "weight_decay": ".0e", "dropout": ".2f",
              "duration_s": ".0f"}
    for trial in ranked[:top]:
        row = _row(trial)
        table.add_row(*("" if row[column] is None else format(row[column], styles.get(column, ""))
                        for column in columns))
    console.print(table)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    console.print(", ".join(f"{count} {state}" for state, count in sorted(counts.items())))
    if result.best is None:
        console.print("[yellow]no trial has completed yet[/]: no best.yaml")
    else:
        console.print(f"best: trial {result.best.number}, {result.metric} "
                      f"{result.best.value:.4f} ({_settings(result.best)})")
        console.print(f"best config: {result.files['best.yaml']} "
                      f"(train it: imgcls train -c {result.files['best.yaml']})")
    console.print(f"trials: {result.files['trials.csv']}, history: "
                  f"{result.files['history.png']}")
