"""`imgcls data check | restore | stats | split | preview`: argument parsing and printing; the
work is in imgcls.data (commands.check_source: doctor.py's scan, the JSON report and
quarantine.py's moves; the tables in doctor_report.py; restore in quarantine.py; the rest in
commands.py).

`add_commands` adds the `data` verb and returns its own sub-verb action, so more sub-verbs
can register beside these:

    data_verbs = add_commands(verbs)
    command = data_verbs.add_parser("shrink", help=...)
    command.set_defaults(handler=_shrink)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from imgcls.cli.options import add_augment_flags, config_option
from imgcls.errors import UserError

if TYPE_CHECKING:
    from imgcls.data.commands import SourceRequest, SplitRequest


def add_commands(verbs: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add `data` to the top-level verbs; return the action that holds its sub-verbs."""
    data = verbs.add_parser("data", help="check a data set and fix its files")
    # The sub-verbs' parsers are of data's own class: Parser's one-line usage errors.
    data_verbs = data.add_subparsers(dest="data_verb", required=True, metavar="SUBVERB",
                                     parser_class=type(data))
    _add_check(data_verbs)
    _add_restore(data_verbs)
    _add_stats(data_verbs)
    _add_split(data_verbs)
    _add_preview(data_verbs)
    return data_verbs


def _add_check(data_verbs: argparse._SubParsersAction) -> None:
    command = data_verbs.add_parser(
        "check", help="scan every file for bad images, duplicates and imbalance",
        description="Exit code 0: no errors; 1: bad files or folders found; 2: a mistake in "
                    "the command. Nothing is changed unless --quarantine is given.")
    command.set_defaults(handler=_check)
    command.add_argument("source", metavar="D", help="a folder of class subfolders or a CSV")
    command.add_argument("--report", metavar="FILE", help="write the full report as JSON")
    command.add_argument("--quarantine", metavar="DIR",
                         help="move files with errors into DIR (outside the data), with a "
                              "manifest that `imgcls data restore` moves them back by")
    command.add_argument("--workers", type=int, help="threads (default: per CPU count)")


def _check(args: argparse.Namespace) -> int:
    from imgcls.data.commands import check_source
    from imgcls.data.doctor import display
    from imgcls.data.doctor_report import print_report

    checked = check_source(args.source, workers=args.workers, report_file=args.report,
                           quarantine_to=args.quarantine)
    console = Console()
    print_report(checked.report, console)
    if checked.report_file:
        console.print(f"report written to {display(checked.report_file)}", markup=False)
    if checked.failure is not None:  # a refused quarantine: said after the report, not instead
        raise checked.failure
    if checked.nothing_to_quarantine:
        console.print("no files to quarantine")
    elif checked.quarantined is not None:
        manifest = checked.quarantined.manifest
        console.print(f"{checked.quarantined.moved} file(s) with errors moved to "
                      f"{display(str(manifest.parent))}; undo with "
                      f"`imgcls data restore {display(str(manifest))}`", markup=False)
    return checked.exit_code


def _add_restore(data_verbs: argparse._SubParsersAction) -> None:
    command = data_verbs.add_parser(
        "restore", help="move quarantined files back where they were",
        description="Moves back only files inside the manifest's folder, only to their place "
                    "inside the data root the manifest records, only when their sha256 "
                    "matches and nothing lies there now; every other entry is named, with "
                    "the reason, and stays quarantined.")
    command.set_defaults(handler=_restore)
    command.add_argument("manifest", metavar="MANIFEST",
                         help="the manifest.json of a quarantine folder (or the folder)")


def _restore(args: argparse.Namespace) -> int:
    from imgcls.data.doctor import display
    from imgcls.data.quarantine import RestoreRefused, restore

    try:
        count = restore(args.manifest)
    except RestoreRefused as refused:
        for refusal in refused.refusals:  # each refused entry and why, one line apiece
            print(f"not restored: {refusal}", file=sys.stderr)
        raise
    print(f"restored {count} file(s) from {display(args.manifest)}")
    return 0


# --- stats, split, preview -------------------------------------------------------------

def _source_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("source", metavar="D", help="folder, CSV or built-in name")
    command.add_argument("--data-dir", help="where built-in data sets' files are")
    command.add_argument("--channels", type=int, choices=(1, 3))
    command.add_argument("--image-size", type=int)


def _split_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--val", type=float, default=0.1, help="validation fraction")
    command.add_argument("--test", type=float, default=0.1, help="test fraction")
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--group-by", metavar="REGEX",
                         help="file names sharing the regex's first group stay together")


def _source(args: argparse.Namespace) -> SourceRequest:
    from imgcls.data.commands import SourceRequest

    return SourceRequest(args.source, data_dir=args.data_dir, channels=args.channels,
                         image_size=args.image_size)


def _split_request(args: argparse.Namespace) -> SplitRequest:
    from imgcls.data.commands import SplitRequest

    return SplitRequest(val=args.val, test=args.test, seed=args.seed, group_by=args.group_by)


def _add_stats(data_verbs: argparse._SubParsersAction) -> None:
    command = data_verbs.add_parser(
        "stats", help="normalization statistics (mean/std and min/max) of the train split")
    command.set_defaults(handler=_stats)
    _source_arguments(command)
    _split_arguments(command)


def _stats(args: argparse.Namespace) -> int:
    from imgcls.data.commands import train_split_stats

    stats = train_split_stats(_source(args), _split_request(args))
    table = Table("channel", "mean", "std", "min", "max",
                  title=f"{stats.source}: train split, {stats.train_images} images, "
                        "pixels scaled to 0..1")
    for index, channel in enumerate(stats.channels):
        table.add_row(str(index), *(f"{value:.4f}" for value in (
            channel.mean, channel.std, channel.min, channel.max)))
    Console().print(table)
    return 0


def _add_split(data_verbs: argparse._SubParsersAction) -> None:
    command = data_verbs.add_parser(
        "split", help="write a stratified train/val/test split that `train --split-file` reuses")
    command.set_defaults(handler=_split)
    _source_arguments(command)
    _split_arguments(command)
    command.add_argument("--output", "-o", default="split.json")


def _split(args: argparse.Namespace) -> int:
    from imgcls.data.commands import write_split

    sizes = write_split(_source(args), _split_request(args), args.output)
    print(f"{sizes.train} train / {sizes.val} val / {sizes.test} test -> {args.output}")
    return 0


def _add_preview(data_verbs: argparse._SubParsersAction) -> None:
    command = data_verbs.add_parser(
        "preview", help="a PNG grid of original and augmented samples")
    command.set_defaults(handler=_preview)
    _source_arguments(command)
    command.add_argument("--output", "-o", default="preview.png")
    command.add_argument("--samples", type=int, default=8)
    command.add_argument("--variants", type=int, default=4)
    command.add_argument("--seed", type=int, default=0)
    group = command.add_argument_group("augmentation")
    config_option(group, "--augment", dest="augment",
                   help="preset: none, light, default, strong")
    add_augment_flags(group)


def _preview(args: argparse.Namespace) -> int:
    from imgcls.config import AUGMENT_FLAGS, TrainConfig
    from imgcls.data.commands import write_augment_preview

    if args.samples < 1 or args.variants < 1:
        raise UserError("--samples and --variants must be at least 1")
    # TrainConfig checks the flags' values as `imgcls train` does.
    config = TrainConfig(**{name: getattr(args, name) for name in ("augment", *AUGMENT_FLAGS)
                            if hasattr(args, name)})
    path = write_augment_preview(_source(args), config.augment, config.augment_overrides(),
                                 args.output, samples=args.samples, variants=args.variants,
                                 seed=args.seed)
    print(f"preview ({args.samples} samples x {args.variants} augmented versions) -> {path}")
    print(json.dumps({"augment": config.augment, **config.augment_overrides()}))
    return 0
