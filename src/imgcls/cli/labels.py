"""`imgcls data labels | suggest`: argument parsing and printing; the work is in
imgcls.tools.labels. Registered beside the other `data` sub-verbs (cli/__init__.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imgcls.errors import UserError
from imgcls.utils.extras import require


def add_commands(data_verbs: argparse._SubParsersAction) -> None:
    _add_labels(data_verbs)
    _add_suggest(data_verbs)


def _add_labels(data_verbs: argparse._SubParsersAction) -> None:
    command = data_verbs.add_parser(
        "labels", help="find wrong labels: out-of-fold predictions and confident learning",
        description="Trains one model per fold (--model auto by default, paced to share "
                    "--time-budget) and asks cleanlab which given labels its out-of-fold "
                    "predictions contradict. Writes label_issues.csv, relabel.csv and "
                    "label_issues.html into -o; changes no file of the data. Ctrl-C keeps "
                    "the finished folds and a rerun continues.")
    command.set_defaults(handler=_labels)
    command.add_argument("source", metavar="DATA", help="folder, CSV or built-in name")
    command.add_argument("--output", "-o", help="default: runs/labels-<data name>")
    command.add_argument("--time-budget",
                         help="for all folds together (default: by the data's size, 1 to 10 "
                              "minutes: Fashion-MNIST's 60,000 images get 10)")
    command.add_argument("--epochs", type=float,
                         help="a fixed length per fold instead of --time-budget's share")
    command.add_argument("--folds", type=int, default=5, help="K (default: 5)")
    command.add_argument("--model", default="auto", help="network per fold (default: auto)")
    command.add_argument("--pretrained", help="imagenet or a state-dict file: frozen features "
                                              "and a trained head per fold (much faster)")
    command.add_argument("--init-from", help="an imgcls model file: its frozen features and "
                                             "a trained head per fold")
    command.add_argument("--relabel", metavar="CSV", help="labels to analyse instead of the "
                                                          "ones on disk (path,label)")
    command.add_argument("--exclude", metavar="FILE", help="items to leave out")
    command.add_argument("--group-by", metavar="REGEX",
                         help="file names sharing the regex's first group stay in one fold")
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--data-dir", help="where built-in data sets' files are")
    command.add_argument("--channels", type=int, choices=(1, 3))
    command.add_argument("--image-size", type=int)
    command.add_argument("--no-progress", action="store_true", help="no progress bars")


def _labels(args: argparse.Namespace) -> int:
    require("imgcls data labels", "labels", "cleanlab")
    from imgcls.tools.labels.folds import LabelsRequest
    from imgcls.tools.labels.run import find_label_issues

    name = Path(args.source.rstrip("/")).stem or "data"
    request = LabelsRequest(
        data=args.source, output=Path(args.output or f"runs/labels-{name}"), folds=args.folds,
        time_budget=args.time_budget, epochs=args.epochs, model=args.model, seed=args.seed,
        data_dir=args.data_dir, image_size=args.image_size, channels=args.channels,
        group_by=args.group_by, relabel=args.relabel, exclude=args.exclude,
        pretrained=args.pretrained, init_from=args.init_from,
        show_progress=not args.no_progress)
    result = find_label_issues(request)
    findings = result.findings
    flagged = int(findings.is_issue.sum())
    print(f"{flagged} of {len(findings.given)} labels look wrong "
          f"({flagged / max(len(findings.given), 1):.1%})")
    print(f"every image, worst first: {result.issues_csv}")
    print(f"the suggested fixes, to edit: {result.relabel_csv} "
          f"(then imgcls train --relabel {result.relabel_csv})")
    print(f"to look at: {result.page}")
    return 0


def _add_suggest(data_verbs: argparse._SubParsersAction) -> None:
    command = data_verbs.add_parser(
        "suggest", help="a model's guesses for unlabeled images, least certain first",
        description="Writes a path,label CSV (with confidence and margin) that --data "
                    "accepts once checked; the images most worth a person's look come first.")
    command.set_defaults(handler=_suggest)
    command.add_argument("folder", metavar="UNLABELED_DIR")
    command.add_argument("--model", required=True, help="a model.safetensors, run or .onnx")
    command.add_argument("-n", type=int, dest="count", help="keep this many (default: all)")
    command.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                         help="leave out guesses below P")
    command.add_argument("--output", "-o", default="suggested.csv")


def _suggest(args: argparse.Namespace) -> int:
    from imgcls.tools.labels.suggest import suggest_labels

    result = suggest_labels(args.folder, args.model, args.output, count=args.count,
                            min_confidence=args.min_confidence)
    for path, why in result.unreadable:
        print(f"imgcls: could not read {path}: {why}", file=sys.stderr)
    below = f"; {result.below_confidence} below --min-confidence" if result.below_confidence \
        else ""
    print(f"{len(result.kept)} guesses, least certain first -> {result.written}{below}")
    if not result.kept:
        raise UserError("no guess kept: lower --min-confidence")
    return 0
