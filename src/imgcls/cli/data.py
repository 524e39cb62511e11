"""`imgcls data ...`: argument parsing for the data verbs; the work is in imgcls.data.

`add_data_commands` adds the `data` verb and returns its own sub-verb action, so more
sub-verbs (stats, split, preview) register beside `check` and `restore`:

    data_verbs = add_data_commands(verbs)
    command = data_verbs.add_parser("stats", help=...)
    command.set_defaults(handler=_stats)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console


def add_data_commands(verbs: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add `data` to the top-level verbs; return the action that holds its sub-verbs."""
    data = verbs.add_parser("data", help="check a data set and fix its files")
    # The sub-verbs' parsers are of data's own class: cli._Parser's one-line usage errors.
    data_verbs = data.add_subparsers(dest="data_verb", required=True, metavar="SUBVERB",
                                     parser_class=type(data))
    _add_check(data_verbs)
    _add_restore(data_verbs)
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
    from imgcls.data.doctor import display, print_report, scan
    from imgcls.data.quarantine import files_to_quarantine, quarantine
    from imgcls.errors import UserError
    from imgcls.io import write_json

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1; got {args.workers}")
    report = scan(args.source, workers=args.workers)
    console = Console()
    print_report(report, console)
    if args.report:
        write_json(args.report, report.to_json())
        console.print(f"report written to {display(args.report)}", markup=False)
    if args.quarantine and not files_to_quarantine(report):
        console.print("no files to quarantine")
    elif args.quarantine:
        moved = len(files_to_quarantine(report))
        manifest = quarantine(report, report.root, Path(args.quarantine))
        console.print(f"{moved} file(s) with errors moved to {display(str(manifest.parent))};"
                      f" undo with `imgcls data restore {display(str(manifest))}`",
                      markup=False)
    return 1 if report.has_errors else 0


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
    import sys

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
