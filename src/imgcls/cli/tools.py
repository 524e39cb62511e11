"""Command line for the training tools: `imgcls lr-find` and `imgcls compare`.

Argument parsing only; the work is in imgcls.training.lr_find and imgcls.compare.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from imgcls.cli import add_train_options
from imgcls.config import TrainConfig
from imgcls.errors import UserError


def add_tool_commands(verbs: argparse._SubParsersAction) -> None:
    _add_lr_find(verbs)
    _add_compare(verbs)


def _add_lr_find(verbs: argparse._SubParsersAction) -> None:
    command = verbs.add_parser(
        "lr-find", help="learning-rate range test: plot loss against lr, suggest an lr"
    )
    command.set_defaults(handler=_lr_find)
    command.add_argument("-c", "--config", help="a TrainConfig YAML (a run's config.yaml)")
    test = command.add_argument_group("range test")
    test.add_argument("--min-lr", type=float, default=1e-7, help="first lr (default: 1e-7)")
    test.add_argument("--max-lr", type=float, default=10.0, help="last lr (default: 10)")
    test.add_argument("--steps", type=int, default=100,
                      help="mini-batches, one lr each (default: 100)")
    test.add_argument("--output", "-o", dest="output_dir", metavar="DIR", default="lr_find",
                      help="where lr_find.png, .csv and .json go (default: ./lr_find)")
    _add_train_options(command, model_flag=True)


def _add_compare(verbs: argparse._SubParsersAction) -> None:
    command = verbs.add_parser(
        "compare", help="train several models on one split and budget; write a leaderboard"
    )
    command.set_defaults(handler=_compare)
    command.add_argument("-c", "--config", help="a TrainConfig YAML (a run's config.yaml)")
    command.add_argument("--models", required=True, metavar="M1,M2,...",
                         help="comma-separated names from `imgcls models`")
    command.add_argument("--output", "-o", dest="output_dir", metavar="DIR", default="compare",
                         help="one run per model in DIR/<model>/, leaderboard.md/.csv/.png "
                              "in DIR (default: ./compare)")
    command.add_argument("--overwrite", action="store_true",
                         help="retrain models that DIR already holds")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_train_options(command, model_flag=False)


# The flags each tool leaves out: its own --output, and for the range test the
# settings of a real run's length and schedule.
_COMPARE_EXCLUDES = frozenset({"output", "save_every_steps", "tensorboard", "model"})
_LR_FIND_EXCLUDES = _COMPARE_EXCLUDES - {"model"} | {
    "epochs", "lr", "sched", "warmup_epochs", "decay_epochs", "decay_milestones", "decay_rate",
    "plateau_patience", "patience", "metric", "ema", "ema_decay",
}


def _add_train_options(command: argparse.ArgumentParser, *, model_flag: bool) -> None:
    add_train_options(command, exclude=_LR_FIND_EXCLUDES if model_flag else _COMPARE_EXCLUDES)


def _config_from(args: argparse.Namespace) -> TrainConfig:
    """-c's settings (if any), then the flags given on the command line over them."""
    overrides = {
        f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)
    }
    base = TrainConfig.from_yaml(args.config).to_dict() if args.config else {}
    return TrainConfig.from_dict({**base, **overrides, "output": None})


def _lr_find(args: argparse.Namespace) -> int:
    from imgcls.training.lr_find import find_lr

    result = find_lr(_config_from(args), min_lr=args.min_lr, max_lr=args.max_lr,
                     steps=args.steps, output=Path(args.output_dir))
    ended = "stopped early: the loss diverged" if result.stopped_early else "ran every step"
    print(f"{len(result.lrs)} steps, {ended}; lowest smoothed loss at lr "
          f"{result.minimum_lr:.2e}")
    if result.steepest_lr is not None:
        print(f"steepest descent at lr {result.steepest_lr:.2e}")
    print(f"suggested lr: {result.suggested_lr:.2e} ({result.rule})")
    print(f"plot: {result.plot_path}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from imgcls.compare import compare

    models = [name.strip() for name in args.models.split(",") if name.strip()]
    if not models:
        raise UserError("--models is empty; pass e.g. --models lenet5,resnet18")
    board = compare(_config_from(args), models, Path(args.output_dir),
                    overwrite=args.overwrite, show_progress=not args.no_progress)
    # Exit 1 when no model finished, so a script notices.
    return 0 if board.best is not None else 1
