"""Train several models on one split with one budget and rank them: a leaderboard.

compare() makes the split once (DIR/split.json), trains each model into DIR/<model>/ with
the same epochs, batch size and seed, then reads every run's metrics.json and
history.jsonl into DIR/leaderboard.md, .csv and .png. A model that fails is listed as
failed, with the reason, and the others still run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from imgcls.config import TrainConfig
from imgcls.errors import UserError
from imgcls.modelfile.artifact import build_network, read_card
from imgcls.modelfile.rundir import RunDir
from imgcls.models import count_parameters, mflops
from imgcls.tools.common import (
    check_model_names,
    csv_text,
    first_line,
    new_figure,
    save_figure,
)
from imgcls.training.prepared_data import prepare_data
from imgcls.training.trainer import train
from imgcls.utils.files import write_text


@dataclass
class Row:
    model: str
    status: str  # "ok" or "failed"
    accuracy: float | None = None  # test split (the trainer's metrics.json)
    f1_macro: float | None = None
    parameters: int | None = None
    mflops: float | None = None  # one forward pass of one image at the run's input size
    train_seconds: float | None = None  # sum of the epochs' `seconds` (evaluation excluded)
    images_per_s: float | None = None  # mean training throughput over the epochs
    run_dir: str = ""
    error: str = ""  # why a failed model failed


@dataclass
class Leaderboard:
    rows: list[Row]  # best first; failed models last
    best: Row | None  # None when every model failed
    output: Path


def compare(
    config: TrainConfig,
    models: list[str],
    output: Path,
    *,
    overwrite: bool = False,
    show_progress: bool = False,
    console: Console | None = None,
) -> Leaderboard:
    """Train each of `models` with `config` (its `model` and `output` are ignored) into
    output/<model>/ on one shared split; write and print the leaderboard."""
    console = console or Console(soft_wrap=True)
    output = Path(output)
    check_model_names(models, "--models")
    config = replace(config, output=None).validate()
    _check_free(output, models, overwrite)
    split_file = _write_split(config, output, console)
    shared = replace(config, split_file=str(split_file))
    rows = []
    for name in models:
        console.rule(f"[bold]{name}")
        rows.append(_train_one(replace(shared, model=name), output / name, overwrite, show_progress,
                               console))
    board = Leaderboard(rank(rows), None, output)
    board.best = next((row for row in board.rows if row.status == "ok"), None)
    write_leaderboard(board)
    print_leaderboard(board, console)
    return board


def _check_free(output: Path, models: list[str], overwrite: bool) -> None:
    taken = [name for name in models if RunDir(output / name).model.exists()]
    if taken and not overwrite:
        raise UserError(f"{output} already holds trained {', '.join(taken)}; pass "
                        f"--overwrite to train them again, or another --output")


def _write_split(config: TrainConfig, output: Path, console: Console) -> Path:
    """The one split every model trains on: config.split_file when given, else made once
    here. prepare_data writes it to output/split.json either way."""
    output.mkdir(parents=True, exist_ok=True)
    prepare_data(config, output, console, reuse_split=False)
    return RunDir(output).split


def _train_one(
    config: TrainConfig, run_dir: Path, overwrite: bool, show_progress: bool, console: Console
) -> Row:
    config = replace(config, output=str(run_dir))
    started = time.perf_counter()
    try:
        train(config, overwrite=overwrite, show_progress=show_progress, console=console)
    # A user error (a too-small image, bad weights) or a runtime one (out of memory) ends
    # this model's run only; the comparison goes on with the others.
    except (UserError, RuntimeError) as error:
        reason = first_line(error, default=type(error).__name__)
        console.print(f"[red]{config.model} failed:[/] {reason}")
        return Row(config.model, "failed", run_dir=str(run_dir), error=reason)
    console.print(f"{config.model}: {time.perf_counter() - started:.1f}s in all")
    return read_run(config.model, run_dir)


def read_run(name: str, run_dir: Path) -> Row:
    """A leaderboard row from a finished run directory."""
    files = RunDir(run_dir)
    metrics = json.loads(files.metrics.read_text())
    history = [json.loads(line) for line in
               files.history.read_text().splitlines() if line.strip()]
    card = read_card(files.model)
    model = build_network(card)
    return Row(
        model=name,
        status="ok",
        accuracy=float(metrics["accuracy"]),
        f1_macro=float(metrics["f1_macro"]),
        parameters=count_parameters(model),
        mflops=mflops(model, card.input.channels, card.input.size),
        train_seconds=sum(record["seconds"] for record in history),
        images_per_s=sum(record["images_per_s"] for record in history) / max(1, len(history)),
        run_dir=str(run_dir),
    )


def rank(rows: list[Row]) -> list[Row]:
    """Best first: test accuracy, then macro-F1; failed models last, in their given order."""
    finished = [row for row in rows if row.status == "ok"]
    failed = [row for row in rows if row.status != "ok"]
    return sorted(finished, key=lambda row: (-row.accuracy, -row.f1_macro)) + failed


# --- output ------------------------------------------------------------------------------

COLUMNS = ("rank", "model", "status", "accuracy", "f1_macro", "parameters", "mflops",
           "train_seconds", "images_per_s", "run_dir", "error")
_HEADINGS = {"f1_macro": "macro-F1", "mflops": "MFLOPs", "train_seconds": "train s",
             "images_per_s": "images/s"}


def _cells(row: Row, rank_number: int | None) -> dict[str, str]:
    """A row as display strings (blank where a failed model has no value)."""
    def number(value: float | None, style: str) -> str:
        return "" if value is None else format(value, style)

    return {
        "rank": "" if rank_number is None else str(rank_number),
        "model": row.model,
        "status": row.status,
        "accuracy": number(row.accuracy, ".4f"),
        "f1_macro": number(row.f1_macro, ".4f"),
        "parameters": number(row.parameters, ","),
        "mflops": number(row.mflops, ",.1f"),
        "train_seconds": number(row.train_seconds, ".1f"),
        "images_per_s": number(row.images_per_s, ",.0f"),
        "run_dir": row.run_dir,
        "error": row.error,
    }


def _ranked_cells(board: Leaderboard) -> list[dict[str, str]]:
    return [_cells(row, index if row.status == "ok" else None)
            for index, row in enumerate(board.rows, start=1)]


def write_leaderboard(board: Leaderboard) -> None:
    board.output.mkdir(parents=True, exist_ok=True)
    write_text(board.output / "leaderboard.csv", _csv(board))
    write_text(board.output / "leaderboard.md", _markdown(board))
    _plot(board, board.output / "leaderboard.png")


def _csv(board: Leaderboard) -> str:
    # Raw numbers, not display strings: the CSV is for other programs.
    rows = ({**{f.name: getattr(row, f.name) for f in fields(Row)},
             "rank": index if row.status == "ok" else ""}
            for index, row in enumerate(board.rows, start=1))
    return csv_text(COLUMNS, rows)


def _markdown(board: Leaderboard) -> str:
    shown = [column for column in COLUMNS if column != "run_dir"]
    lines = [
        "| " + " | ".join(_HEADINGS.get(column, column) for column in shown) + " |",
        "| " + " | ".join("---" if column in ("model", "status", "error") else "---:"
                          for column in shown) + " |",
    ]
    for cells in _ranked_cells(board):
        lines.append("| " + " | ".join(cells[column].replace("|", "\\|") for column in shown)
                     + " |")
    best = f"\nbest: {_describe_best(board)}\n"
    return "\n".join(lines) + "\n" + best


def _describe_best(board: Leaderboard) -> str:
    if board.best is None:
        return "none (every model failed)"
    return (f"{board.best.model} (accuracy {board.best.accuracy:.4f}, "
            f"macro-F1 {board.best.f1_macro:.4f})")


def _plot(board: Leaderboard, path: Path) -> None:
    """Test accuracy against training time, one labelled point per finished model."""
    figure = new_figure()
    axes = figure.axes[0]
    finished = [row for row in board.rows if row.status == "ok"]
    for row in finished:
        axes.scatter(row.train_seconds, row.accuracy, s=40,
                     color="C3" if row is board.best else "C0")
        axes.annotate(row.model, (row.train_seconds, row.accuracy),
                      textcoords="offset points", xytext=(5, 4), fontsize=9)
    failed = [row.model for row in board.rows if row.status != "ok"]
    if failed:
        axes.text(0.01, 0.01, "failed: " + ", ".join(failed), transform=axes.transAxes,
                  fontsize=8, color="C3")
    if len({row.train_seconds for row in finished}) > 1:
        axes.set_xscale("log")  # models' training times span orders of magnitude
    axes.margins(x=0.15, y=0.1)  # room for the labels of the outermost points
    axes.set_xlabel("training seconds")
    axes.set_ylabel("test accuracy")
    axes.set_title("leaderboard: test accuracy against training time")
    axes.grid(True, which="both", alpha=0.3)
    save_figure(figure, path)


def print_leaderboard(board: Leaderboard, console: Console) -> None:
    # Fits an 80-column terminal: light borders, parameters in millions, failures below.
    shown = ("rank", "model", "accuracy", "f1_macro", "parameters", "mflops", "train_seconds",
             "images_per_s")
    table = Table(title=f"leaderboard ({board.output})", box=box.SIMPLE_HEAD)
    headings = {**_HEADINGS, "rank": "#", "parameters": "params", "images_per_s": "img/s"}
    for column in shown:
        justify = "left" if column == "model" else "right"
        table.add_column(headings.get(column, column), no_wrap=True, justify=justify)
    for row, cells in zip(board.rows, _ranked_cells(board), strict=True):
        if row.status == "ok":
            cells["parameters"] = f"{row.parameters / 1e6:.2f}M"
            table.add_row(*(cells[column] for column in shown))
        else:
            table.add_row("", row.model, "failed", style="red")
    console.print(table)
    for row in board.rows:
        if row.status != "ok":
            console.print(f"[red]{row.model} failed:[/] {row.error}")
    console.print(f"best: {_describe_best(board)}")
