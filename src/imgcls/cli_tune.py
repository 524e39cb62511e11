"""Command line for `imgcls tune`: argument parsing only; the work is in imgcls.tune.

`python -m imgcls.cli_tune tune ...` runs it on its own too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from imgcls.cli import add_train_options
from imgcls.config import OPTIMIZERS, TrainConfig
from imgcls.errors import UserError
from imgcls.tune import DEFAULT_STORAGE, PRUNERS, SEARCHABLE, TUNE_METRICS, SearchSpace

# tune's own --output and --metric replace train's; a trial's run is never resumed alone.
_TUNE_EXCLUDES = frozenset({"output", "metric", "save_every_steps"})


def add_tune_commands(verbs: argparse._SubParsersAction) -> None:
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


def _config_from(args: argparse.Namespace) -> TrainConfig:
    """-c's settings (if any), then the flags given on the command line over them."""
    overrides = {
        f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)
    }
    base = TrainConfig.from_yaml(args.config).to_dict() if args.config else {}
    return TrainConfig.from_dict({**base, **overrides, "output": None})


def _tune(args: argparse.Namespace) -> int:
    from imgcls.tune import tune

    models = None
    if args.search_models is not None:
        models = tuple(name.strip() for name in args.search_models.split(",") if name.strip())
        if not models:
            raise UserError("--search-models is empty; pass e.g. --search-models lenet5,resnet18")
        if hasattr(args, "model") and args.model not in models:
            raise UserError(f"--model {args.model} is not among --search-models "
                            f"{','.join(models)}; pass one of them, or neither")
    optimizers = OPTIMIZERS
    if args.search_optimizers is not None:
        if hasattr(args, "optimizer"):
            raise UserError("--optimizer fixes the optimizer and --search-optimizers searches "
                            "it; pass one of them")
        optimizers = tuple(name.strip() for name in args.search_optimizers.split(",")
                           if name.strip())
    # A searchable setting given as a flag is fixed for every trial.
    fixed = frozenset(name for name in SEARCHABLE if name != "model" and hasattr(args, name))
    output = Path(args.output_dir) if args.output_dir else Path("tune") / args.study
    space = SearchSpace(models=models, optimizers=optimizers, fixed=fixed)
    result = tune(_config_from(args), trials=args.trials, study_name=args.study,
                  storage=args.storage, output=output, metric=args.metric, space=space,
                  pruner=args.pruner, sampler_seed=args.sampler_seed, timeout=args.timeout)
    # Exit 1 when no trial of the study has completed, so a script notices.
    return 0 if result.best is not None else 1


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m imgcls.cli_tune tune ...`: the tune verb alone (lighter to start)."""
    from imgcls.cli import _Parser, run

    parser = _Parser(prog="imgcls", description="Hyperparameter search.")
    add_tune_commands(parser.add_subparsers(dest="verb", required=True, metavar="VERB",
                                            parser_class=_Parser))
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
