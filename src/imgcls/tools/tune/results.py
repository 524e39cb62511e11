"""What a worker writes and prints for the whole study: trials.csv, history.png, best.yaml
and the summary table."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from imgcls.config import TrainConfig
from imgcls.tools.common import csv_text, new_figure, save_figure
from imgcls.tools.tune.space import SEARCHABLE
from imgcls.tools.tune.storage import best_trial
from imgcls.utils.files import write_text


@dataclass
class TuneResult:
    study: Any  # optuna.Study
    output: Path
    metric: str
    best: Any | None  # optuna.trial.FrozenTrial; None until some trial completes
    files: dict[str, Path] = field(default_factory=dict)


CSV_COLUMNS = ("number", "state", "value", "epochs", *SEARCHABLE, "duration_s", "worker",
               "host", "run_dir", "error")


def trial_row(trial: Any) -> dict[str, Any]:
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
    best = best_trial(study)
    if best is not None:
        files["best.yaml"] = output / "best.yaml"
        write_text(files["best.yaml"], best_config(best).to_yaml())
    return files


def best_config(trial: Any) -> TrainConfig:
    """The full TrainConfig a trial trained with, output cleared (a new run directory)."""
    return TrainConfig.from_dict({**trial.user_attrs["config"], "output": None},
                                 origin=f"trial {trial.number}")


def _csv(trials: Iterable[Any]) -> str:
    return csv_text(CSV_COLUMNS, (trial_row(trial) for trial in trials))


def _plot(trials: list[Any], metric: str, path: Path) -> None:
    """Optimization history: each finished trial's value, pruned ones at their last value,
    and the best so far."""
    figure = new_figure()
    axes = figure.axes[0]
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
    save_figure(figure, path)  # whole or not at all: another worker may be writing it too


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


def describe_trial(trial: Any, metric: str) -> str:
    state = trial.state.name.lower()
    value = f" {metric} {trial.value:.4f}" if _finite(trial.value) else ""
    error = trial.user_attrs.get("error")
    reason = f" ({error})" if error and state == "fail" else ""
    duration = f", {trial.duration.total_seconds():.1f}s" if trial.duration else ""
    return f"trial {trial.number} {state}{value}{reason}{duration}: {_settings(trial)}"


def best_so_far(study: Any, metric: str) -> str:
    best = best_trial(study)
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
    searched = [name for name in SEARCHABLE if len({trial_row(t)[name] for t in trials}) > 1]
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
        row = trial_row(trial)
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
