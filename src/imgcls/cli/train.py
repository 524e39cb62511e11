"""`imgcls train | eval | calibrate | predict | models`: argument parsing; the work is in
the public API."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from imgcls.cli.backend_option import add_backend_option
from imgcls.cli.options import add_train_options, comma_list, config_from_args, given_settings
from imgcls.errors import UserError
from imgcls.utils.csv_safe import safe_row

if TYPE_CHECKING:
    from imgcls.models.catalog import BenchTable, CatalogRequest, LeftOut, ModelTable


def add_commands(verbs: argparse._SubParsersAction) -> None:
    _add_train(verbs)
    _add_eval(verbs)
    _add_calibrate(verbs)
    _add_predict(verbs)
    _add_models(verbs)


# --- train -------------------------------------------------------------------------------

def _add_train(verbs: argparse._SubParsersAction) -> None:
    command = verbs.add_parser("train", help="train a model; writes a run directory")
    command.set_defaults(handler=_train)
    command.add_argument("-c", "--config", help="a TrainConfig YAML (a run's config.yaml)")
    command.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last.pt")
    command.add_argument("--overwrite", action="store_true",
                         help="replace the model in an existing --output directory")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_train_options(command)


def _train(args: argparse.Namespace) -> int:
    from imgcls.training.budget import process_started
    from imgcls.training.trainer import resume, train

    show_progress = not args.no_progress
    if args.resume:
        unsupported = sorted(set(given_settings(args)) - {"epochs"})
        if unsupported:
            raise UserError(f"--resume takes only --epochs; it keeps the run's own "
                            f"{', '.join(unsupported)}")
        resume(args.resume, epochs=getattr(args, "epochs", None), show_progress=show_progress)
        return 0
    # A --time-budget counts from the command's start: imports and loading are the user's time.
    train(config_from_args(args), overwrite=args.overwrite, show_progress=show_progress,
          started=process_started())
    return 0


# --- eval --------------------------------------------------------------------------------

def _add_eval(verbs: argparse._SubParsersAction) -> None:
    command = verbs.add_parser("eval", help="metrics of a model file on a data set")
    command.set_defaults(handler=_eval)
    command.add_argument("model", metavar="MODEL", help="a model.safetensors or a run directory")
    command.add_argument("--data", required=True, help="folder, CSV or built-in name")
    command.add_argument("--data-dir", help="where built-in data sets' files are")
    command.add_argument("--split", choices=("train", "val", "test", "all"),
                         help="default: test for the training data, all for other data")
    command.add_argument("--output", "-o", help="metrics JSON (default: beside the model)")
    command.add_argument("--report", metavar="FILE",
                         help="the HTML report (default: eval-<split>.html beside the model)")
    command.add_argument("--no-report", action="store_true", help="skip the HTML report")
    add_backend_option(command)


def _eval(args: argparse.Namespace) -> int:
    from imgcls.evaluation.evaluate import evaluate_to_files

    written = evaluate_to_files(args.model, args.data, split=args.split, data_dir=args.data_dir,
                                backend=args.backend, output=args.output, report=args.report,
                                with_report=not args.no_report)
    _print_metrics(written.metrics)
    print(f"metrics written to {written.metrics_file}")
    if written.report is not None:
        print(f"report written to {written.report}")
    return 0


def _add_calibrate(verbs: argparse._SubParsersAction) -> None:
    command = verbs.add_parser(
        "calibrate", help="fit a model file's temperature and `unknown` threshold on its "
                          "validation split (training does this itself)")
    command.set_defaults(handler=_calibrate)
    command.add_argument("model", metavar="MODEL", help="a model.safetensors or run directory")
    command.add_argument("--data", help="the data it was trained on (default: as recorded)")
    command.add_argument("--data-dir", help="where built-in data sets' files are")
    command.add_argument("--ood-keep", type=float, default=0.95, metavar="SHARE",
                         help="the share of validation images the `unknown` threshold keeps")


def _calibrate(args: argparse.Namespace) -> int:
    import imgcls

    trust = imgcls.calibrate(args.model, data=args.data, data_dir=args.data_dir,
                             keep=args.ood_keep)
    fitted = trust["fitted"]
    print(f"calibrated on {fitted['images']} validation images: temperature "
          f"{trust['temperature']:.3f}, ECE {fitted['ece_before']:.4f} -> "
          f"{fitted['ece_after']:.4f}; `unknown` below familiarity {trust['threshold']:.3f} "
          f"(keeps {trust['keep']:.0%}) -> {args.model}")
    return 0


def _print_metrics(metrics: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"{metrics['data']} ({metrics['split']}, {metrics['num_samples']} images)")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, row in metrics["per_class"].items():
        table.add_row(name, f"{row['precision']:.4f}", f"{row['recall']:.4f}",
                      f"{row['f1']:.4f}", str(row["support"]))
    table.add_section()
    for average in ("macro", "weighted"):
        table.add_row(f"{average} avg", f"{metrics[f'precision_{average}']:.4f}",
                      f"{metrics[f'recall_{average}']:.4f}", f"{metrics[f'f1_{average}']:.4f}",
                      str(metrics["num_samples"]))
    console.print(table)
    summary = f"accuracy {metrics['accuracy']:.4f}"
    if "top5_accuracy" in metrics:
        summary += f"  top-5 accuracy {metrics['top5_accuracy']:.4f}"
    console.print(summary)
    trust = metrics.get("trust")
    if trust:
        console.print(f"calibration error (ECE) {trust['ece_before']:.4f} before the "
                      f"temperature {trust['temperature']:.3f}, {trust['ece_after']:.4f} after; "
                      f"{trust['unknown_rate']:.1%} answered unknown")


# --- predict -----------------------------------------------------------------------------

def _add_predict(verbs: argparse._SubParsersAction) -> None:
    command = verbs.add_parser("predict", help="classify images with a model file")
    command.set_defaults(handler=_predict)
    command.add_argument("model", metavar="MODEL", help="a model.safetensors, a run directory "
                         "or an exported .onnx (runs without torch)")
    command.add_argument("inputs", metavar="IMAGE|DIR", nargs="+")
    command.add_argument("--topk", type=int, default=5)
    command.add_argument("--format", choices=("table", "json", "csv"), default="table")
    command.add_argument("--reject-below", type=_reject_below, default="card",
                         metavar="FAMILIARITY|card|off",
                         help="answer `unknown` (none of the model's classes) when an image's "
                              "familiarity is below this; card (default): the threshold the "
                              "model file was fitted with; off: never")
    # auto: a few images run the export training cached, without importing torch (cold
    # start 0.3 s, not 7); more are timed once per machine (predict/backends/cached_onnx.py).
    add_backend_option(command, default="auto")


def _predict(args: argparse.Namespace) -> int:
    import imgcls

    answers = imgcls.classify(args.model, args.inputs, topk=args.topk,
                              reject_below=args.reject_below, backend=args.backend,
                              warn=lambda reason: print(f"imgcls: warning: {reason}",
                                                        file=sys.stderr))
    predictions = [answer.to_dict() for answer in answers]
    print(_format_predictions(predictions, args.format), end="")
    failed = [p for p in predictions if p.get("error")]
    for item in failed:
        print(f"imgcls: could not read {item['input']}: {item['error']}", file=sys.stderr)
    return 1 if failed else 0


def _reject_below(value: str) -> float | str:
    from imgcls.predict.prediction import parse_reject_below

    try:
        return parse_reject_below(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _format_predictions(predictions: list[dict[str, Any]], style: str) -> str:
    if style == "json":
        return json.dumps(predictions, indent=2) + "\n"
    if style == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        trusted = any("familiarity" in p for p in predictions)  # the card has a trust record
        writer.writerow(["input", "label", "score", "topk"]
                        + (["unknown", "familiarity"] if trusted else []))
        for p in predictions:
            topk = ";".join(f"{t['label']}:{t['score']:.6f}" for t in p["topk"])
            score = "" if p["score"] is None else f"{p['score']:.6f}"
            trust = [int(p["unknown"]), round(p["familiarity"], 4)] if "familiarity" in p else []
            writer.writerow(safe_row([p["input"], p["label"] or "", score, topk,
                                      *(trust or [""] * 2 * trusted)]))
        return buffer.getvalue()
    trusted = any("familiarity" in p for p in predictions)
    table = Table("input", "label", "score", "top-k", *(["familiarity"] if trusted else []))
    for p in predictions:
        topk = ", ".join(f"{t['label']} {t['score']:.3f}" for t in p["topk"])
        score = "" if p["score"] is None else f"{p['score']:.4f}"
        familiar = [f"{p['familiarity']:.2f}" if "familiarity" in p else ""] if trusted else []
        table.add_row(p["input"], p["label"] or f"[red]{p.get('error')}[/]", score, topk,
                      *familiar)
    buffer = io.StringIO()
    Console(file=buffer, width=120).print(table)
    return buffer.getvalue()


# --- models ------------------------------------------------------------------------------

def _add_models(verbs: argparse._SubParsersAction) -> None:
    command = verbs.add_parser(
        "models", help="list the networks: parameters, MFLOPs, CPU cost; --bench measures them")
    command.set_defaults(handler=_models)
    command.add_argument("--image-size", type=int, default=32)
    command.add_argument("--channels", type=int, default=3, choices=(1, 3))
    command.add_argument("--num-classes", type=int, default=10)
    command.add_argument("--bench", action="store_true",
                         help="measure training and inference images/s on this machine "
                              "(the CPU-practical models unless --models is given)")
    command.add_argument("--models", type=comma_list,
                         help="comma-separated names to list or measure, e.g. resnet20,lenet5")
    command.add_argument("--batch-size", type=int, default=128)
    command.add_argument("--images", type=int, default=60_000,
                         help="training images in an epoch, for the epoch time (default 60000)")
    command.add_argument("--seconds", type=float, default=1.5,
                         help="seconds to time each model's training and inference (--bench)")


def _models(args: argparse.Namespace) -> int:
    from imgcls.models.catalog import CatalogRequest, bench_models, describe_models

    request = CatalogRequest(names=args.models, image_size=args.image_size,
                             channels=args.channels, num_classes=args.num_classes,
                             images=args.images, batch_size=args.batch_size,
                             seconds=args.seconds)
    # Piped output keeps every column whole rather than rich's 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 130)
    if not args.bench:
        listed = describe_models(request)
        _print_left_out(listed.left_out, request, console)
        console.print(_models_table(listed, request))
        return 0
    err = Console(stderr=True)
    bench = bench_models(request, measuring=lambda name: err.print(f"measuring {name} ..."))
    _print_left_out(bench.left_out, request, console)
    console.print(_bench_table(bench, request))  # it measures as its rows are read
    return 0


def _print_left_out(left_out: list[LeftOut], request: CatalogRequest, console: Console) -> None:
    if left_out:
        console.print(f"left out at {request.image_size} px: " + ", ".join(
            f"{model.name} (needs {model.min_size} px)" for model in left_out))


def _models_table(catalog: ModelTable, request: CatalogRequest) -> Table:
    from imgcls.models import speed

    table = Table(
        "model", "family", "parameters", "MFLOPs", "epoch (est.)", "CPU-practical", "compact",
        "ImageNet weights",
        title=f"{request.shape} input, {request.num_classes} classes",
        caption=f"epoch: {request.images:,} images estimated at {speed.ASSUMED_CPU_GFLOPS:.0f} "
                f"GFLOP/s, 3x the forward FLOPs per training image (a 2-core CPU). "
                f"CPU-practical: a {speed.FASHION_MNIST_TRAIN_IMAGES:,}-image epoch in under "
                f"{speed.PRACTICAL_EPOCH_S / 60:.0f} min. `imgcls models --bench` measures.")
    for row in catalog.rows:
        table.add_row(row.name, row.family, f"{row.parameters:,}", f"{row.mflops:,.1f}",
                      _duration(row.epoch_seconds), _yes_no(row.cpu_practical),
                      _yes_no(row.compact), _yes_no(row.imagenet_weights))
    return table


def _bench_table(catalog: BenchTable, request: CatalogRequest) -> Table:
    table = Table(
        "model", "precision", "memory format", "train images/s", "infer images/s",
        "train GFLOP/s", "epoch",
        title=f"{request.shape} input, batch {request.batch_size}, threads: "
              f"{catalog.threads}, measured on this machine",
        caption=f"epoch: {request.images:,} training images at the measured rate")
    for result in catalog.rows:
        table.add_row(result.model, result.precision,
                      "channels_last" if result.channels_last else "contiguous",
                      f"{result.train_images_per_s:,.0f}", f"{result.infer_images_per_s:,.0f}",
                      f"{result.train_gflops:,.1f}",
                      _duration(result.epoch_seconds(request.images)))
    return table


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"

