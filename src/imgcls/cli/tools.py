"""`imgcls lr-find | compare | tune`: argument parsing only; the work is in imgcls.tools.

`python -m imgcls.cli.tools tune ...` runs these verbs without the rest of the CLI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from imgcls.cli.options import add_train_options, comma_list, config_from_args
from imgcls.cli.parsing import Parser, add_verbs, run
from imgcls.config import OPTIMIZERS
from imgcls.errors import UserError
from imgcls.tools.tune.space import PRUNERS, SEARCHABLE, TUNE_METRICS, SearchSpace
from imgcls.tools.tune.storage import DEFAULT_STORAGE


def add_commands(verbs: argparse._SubParsersAction) -> None:
    _add_lr_find(verbs)
    _add_compare(verbs)
    _add_tune(verbs)


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


def _lr_find(args: argparse.Namespace) -> int:
    from imgcls.tools.lr_find import find_lr

    result = find_lr(config_from_args(args), min_lr=args.min_lr, max_lr=args.max_lr,
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
    from imgcls.tools.compare import compare

    # compare() refuses an empty, repeated or unknown name before training anything.
    board = compare(config_from_args(args), comma_list(args.models), Path(args.output_dir),
                    overwrite=args.overwrite, show_progress=not args.no_progress)
    # Exit 1 when no model finished, so a script notices.
    return 0 if board.best is not None else 1


# --- tune ------------------------------------------------------------------------------

# tune's own --output and --metric replace train's; a trial's run is never resumed alone.
_TUNE_EXCLUDES = frozenset({"output", "metric", "save_every_steps"})


def _add_tune(verbs: argparse._SubParsersAction) -> None:
    command = verbs.add_parser(
        "tune", help="hyperparameter search with Optuna; several processes share one study"
    )
    command.set_defaults(handler=_tune)
    command.add_argument("-c", "--config", help="a TrainConfig YAML the trials start from")
    search = command.add_argument_group(
        "search",
        "Each trial samples lr, weight decay, batch size, dropout, optimizer and augment preset "
        "(and the model with --search-models); a train flag given here fixes that setting. "
        "Every `imgcls tune` process on the same --storage and --study is one more worker.",
    )
    search.add_argument("--trials", type=int, default=20,
                        help="trials this worker runs (default: 20)")
    search.add_argument("--study", default="imgcls", help="study name (default: imgcls)")
    search.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                        help="Optuna storage: sqlite:///FILE (relative to the current "
                             "directory) or postgresql://user:password@host/db to share the "
                             f"study between machines (default: {DEFAULT_STORAGE})")
    search.add_argument("--search-models", metavar="M1,M2,...",
                        help="also search the architecture among these (instead of --model)")
    search.add_argument("--search-optimizers", metavar="O1,O2,...",
                        help="search only these optimizers (default: all of --optimizer's)")
    search.add_argument("--metric", choices=TUNE_METRICS, default="val_f1_macro",
                        help="validation metric to maximize (default: val_f1_macro)")
    search.add_argument("--pruner", choices=PRUNERS, default="median",
                        help="stop poor trials early on their per-epoch metric: median "
                             "(below the median of earlier trials), hyperband (default: median)")
    search.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="start no new trial after this long")
    search.add_argument("--sampler-seed", type=int,
                        help="seed of this worker's TPE sampler (default: from its process id)")
    search.add_argument("--output", "-o", dest="output_dir", metavar="DIR",
                        help="trial runs in DIR/trial-<number>/, best.yaml, trials.csv, "
                             "history.png in DIR (default: tune/<study>)")
    add_train_options(command, exclude=_TUNE_EXCLUDES)


def _tune(args: argparse.Namespace) -> int:
    from imgcls.tools.tune import tune

    models = None
    if args.search_models is not None:
        # tune() refuses an empty, repeated or unknown name before any trial runs.
        models = tuple(comma_list(args.search_models))
        if models and hasattr(args, "model") and args.model not in models:
            raise UserError(f"--model {args.model} is not among --search-models "
                            f"{','.join(models)}; pass one of them, or neither")
    optimizers = OPTIMIZERS
    if args.search_optimizers is not None:
        if hasattr(args, "optimizer"):
            raise UserError("--optimizer fixes the optimizer and --search-optimizers searches "
                            "it; pass one of them")
        optimizers = tuple(comma_list(args.search_optimizers))
    # A searchable setting given as a flag is fixed for every trial.
    fixed = frozenset(name for name in SEARCHABLE if name != "model" and hasattr(args, name))
    output = Path(args.output_dir) if args.output_dir else Path("tune") / args.study
    space = SearchSpace(models=models, optimizers=optimizers, fixed=fixed)
    result = tune(config_from_args(args), trials=args.trials, study_name=args.study,
                  storage=args.storage, output=output, metric=args.metric, space=space,
                  pruner=args.pruner, sampler_seed=args.sampler_seed, timeout=args.timeout)
    # Exit 1 when no trial of the study has completed, so a script notices.
    return 0 if result.best is not None else 1


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m imgcls.cli.tools tune ...`: these verbs alone (lighter to start)."""
    parser = Parser(prog="imgcls", description="Training tools: lr-find, compare, tune.")
    add_commands(add_verbs(parser))
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
