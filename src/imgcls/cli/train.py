"""Command line: argument parsing only; every verb calls the public API."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from imgcls.cli_data import add_data_commands
from imgcls.cli_data_tools import add_data_tools
from imgcls.cli_serve import add_serve_commands
from imgcls.config import (
    AUGMENTS,
    BALANCES,
    METRICS,
    NORMALIZATIONS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    TrainConfig,
)
from imgcls.csv_safe import safe_row
from imgcls.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm"}
_DEFAULTS = TrainConfig()


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse and dispatch: a user's mistake is one line on stderr and exit code 2."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help, or a usage mistake already printed
        return int(exit_request.code or 0)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"imgcls: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imgcls: interrupted", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (like every other user error), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="imgcls", description="Deep-learning image classification.")
    verbs = parser.add_subparsers(
        dest="verb", required=True, metavar="VERB", parser_class=_Parser
    )
    _add_train(verbs)
    _add_eval(verbs)
    _add_predict(verbs)
    _add_models(verbs)
    add_data_tools(add_data_commands(verbs))
    from imgcls.cli_tools import add_tool_commands  # it imports this module's helpers

    add_tool_commands(verbs)
    from imgcls.cli_tune import add_tune_commands  # it imports this module's helpers

    add_tune_commands(verbs)
    add_serve_commands(verbs)
    return parser


# --- train -------------------------------------------------------------------------------

def _config_option(
    group: argparse._ArgumentGroup, *flags: str, dest: str, **kwargs: Any
) -> None:
    """A flag that overrides TrainConfig.<dest> only when given (so -c config.yaml stands)."""
    default = getattr(_DEFAULTS, dest)
    help_text = kwargs.pop("help", "")
    group.add_argument(*flags, dest=dest, default=argparse.SUPPRESS,
                       help=f"{help_text} (default: {default})".strip(), **kwargs)


def _add_train(verbs: argparse._SubParsersAction) -> None:
    command = verbs.add_parser("train", help="train a model; writes a run directory")
    command.set_defaults(handler=_train)
    command.add_argument("-c", "--config", help="a TrainConfig YAML (a run's config.yaml)")
    command.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last.pt")
    command.add_argument("--overwrite", action="store_true",
                         help="replace the model in an existing --output directory")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_train_options(command)


def add_train_options(
    command: argparse.ArgumentParser, *, exclude: frozenset[str] = frozenset()
) -> None:
    """Every TrainConfig flag of `imgcls train` (but those whose setting is in `exclude`),
    each overriding the config only when given; `lr-find` and `compare` share them."""

    def _option(group: argparse._ArgumentGroup, *flags: str, dest: str, **kwargs: Any) -> None:
        if dest not in exclude:
            _config_option(group, *flags, dest=dest, **kwargs)

    data = command.add_argument_group("data")
    _option(data, "--data", dest="data", help="folder, CSV, digits, fashion-mnist, mnist, cifar10")
    _option(data, "--data-dir", dest="data_dir", help="where built-in data sets' files are")
    _option(data, "--image-size", dest="image_size", type=int, help="side in pixels")
    _option(data, "--channels", dest="channels", type=int, choices=(1, 3))
    _option(data, "--val", dest="val_fraction", type=float, help="validation fraction")
    _option(data, "--test", dest="test_fraction", type=float, help="test fraction")
    _option(data, "--split-seed", dest="split_seed", type=int, help="seed of the split")
    _option(data, "--split-file", dest="split_file", metavar="SPLIT_JSON",
            help="reuse a split (from `imgcls data split` or a run's split.json)")
    _option(data, "--group-by", dest="group_by", metavar="REGEX",
            help="file names sharing the regex's first group stay in one split")
    _option(data, "--cache-limit", dest="cache_limit", type=float, metavar="GIB",
            help="folders decoding to more stream from disk (default: a quarter of RAM)")
    _option(data, "--workers", dest="workers", type=int,
            help="decoding processes when streaming (default: one per core)")
    _option(data, "--balance", dest="balance", choices=BALANCES,
            help="imbalanced classes: class-weighted loss or a weighted sampler")
    _option(data, "--normalize", dest="normalize", choices=NORMALIZATIONS)
    _option(data, "--augment", dest="augment", choices=AUGMENTS, help="augmentation preset")
    if "augment" not in exclude:
        add_augment_flags(data)
    model = command.add_argument_group("model")
    _option(model, "--model", "-m", dest="model",
            help="a name from `imgcls models`, or auto: the network the data and the "
                 "--time-budget allow")
    _option(model, "--recipe", dest="recipe", metavar="NAME",
            help="a measured configuration from imgcls/recipes (flags override it; default: "
                 "the model's own recipe on small images; none: no recipe)")
    _option(model, "--activation", dest="activation",
            help="relu, gelu, silu, tanh, sigmoid, leaky_relu")
    _option(model, "--dropout", "--drop", dest="dropout", type=float)
    _option(model, "--width", dest="width", type=float, help="channel width multiplier")
    _option(model, "--pretrained", dest="pretrained", nargs="?", const="imagenet",
            metavar="PATH", help="torchvision ImageNet weights, or a local state-dict file")
    _option(model, "--init-from", dest="init_from", metavar="MODEL",
            help="start from an imgcls model file; its architecture, channels and image size "
                 "unless given")
    _option(model, "--freeze-backbone", dest="freeze_backbone", action="store_true",
            help="train the classifier head only")
    optimization = command.add_argument_group("optimization")
    _option(optimization, "--epochs", dest="epochs", type=_epochs,
            help="a fraction stops the last epoch part way")
    _option(optimization, "--time-budget", dest="time_budget", metavar="DURATION",
            help="e.g. 90s, 10m, 1h: plan the epochs (and with --model auto the network) to "
                 "end within it, evaluation included")
    _option(optimization, "--batch-size", "-b", dest="batch_size", type=int)
    _option(optimization, "--optimizer", "--opt", dest="optimizer", choices=OPTIMIZERS)
    _option(optimization, "--lr", dest="lr", type=float,
            help="learning rate; default per optimizer")
    _option(optimization, "--momentum", dest="momentum", type=float)
    _option(optimization, "--weight-decay", "--wd", dest="weight_decay", type=float)
    _option(optimization, "--sched", dest="sched", choices=SCHEDULES)
    _option(optimization, "--warmup-epochs", dest="warmup_epochs", type=float)
    _option(optimization, "--decay-epochs", dest="decay_epochs", type=float,
            help="--sched step: decay every this many epochs")
    _option(optimization, "--decay-milestones", dest="decay_milestones", type=int, nargs="+",
            metavar="EPOCH", help="--sched multistep: decay at these epochs")
    _option(optimization, "--decay-rate", dest="decay_rate", type=float,
            help="lr factor at each decay (step, multistep, plateau)")
    _option(optimization, "--plateau-patience", dest="plateau_patience", type=int)
    _option(optimization, "--label-smoothing", "--smoothing", dest="label_smoothing",
            type=float)
    _option(optimization, "--ema", dest="ema", action="store_true",
            help="evaluate and save an exponential moving average of the weights")
    _option(optimization, "--ema-decay", dest="ema_decay", type=float)
    _option(optimization, "--clip-grad", dest="clip_grad", type=float, help="max gradient norm")
    _option(optimization, "--metric", dest="metric", choices=METRICS,
            help="validation metric that picks the best model")
    _option(optimization, "--patience", dest="patience", type=int,
            help="stop after this many epochs without a better --metric")
    speed = command.add_argument_group("speed and reproducibility")
    _option(speed, "--precision", dest="precision", choices=PRECISIONS)
    _option(speed, "--no-channels-last", dest="channels_last", action="store_false")
    _option(speed, "--threads", dest="threads", type=int)
    _option(speed, "--device", dest="device", help="cpu, cuda, cuda:1 ...")
    _option(speed, "--seed", dest="seed", type=int)
    _option(speed, "--deterministic", dest="deterministic", action="store_true",
            help="deterministic kernels: the same seed gives identical weights")
    _option(speed, "--compile", dest="compile", action="store_true", help="torch.compile")
    _option(speed, "--sync-bn", dest="sync_bn", action="store_true",
            help="under torchrun: BatchNorm statistics over all ranks (CUDA only)")
    output = command.add_argument_group("output")
    _option(output, "--output", "-o", dest="output", help="run directory")
    _option(output, "--save-every-steps", dest="save_every_steps", type=int,
            help="also write the resume state every N steps")
    _option(output, "--tensorboard", dest="tensorboard", action="store_true",
            help="write TensorBoard event files to RUN/tensorboard")


def _epochs(text: str) -> int | float:
    """--epochs 5 stays an integer in config.yaml; --epochs 2.5 is allowed."""
    value = float(text)
    return int(value) if value.is_integer() else value


def add_augment_flags(group: argparse._ArgumentGroup) -> None:
    """Per-flag overrides of the --augment preset (names follow timm where it has one)."""
    _option = _config_option
    _option(group, "--resized-crop", dest="resized_crop", type=float, metavar="MIN_SCALE")
    _option(group, "--shift", dest="shift", type=float, metavar="FRACTION",
            help="random crop with padding: max shift as a fraction of the side")
    _option(group, "--rotate", dest="rotate", type=float, metavar="DEGREES")
    _option(group, "--hflip", dest="hflip", type=float, metavar="P")
    _option(group, "--vflip", dest="vflip", type=float, metavar="P")
    for name in ("brightness", "contrast", "saturation", "hue"):
        _option(group, f"--{name}", dest=name, type=float)
    _option(group, "--noise", dest="noise", type=float, metavar="STD")
    _option(group, "--erase", "--reprob", dest="erase", type=float, metavar="P",
            help="random erasing probability")
    _option(group, "--auto-augment", "--aa", dest="auto_augment",
            choices=("none", "randaugment", "trivialaugment"))
    _option(group, "--mixup", dest="mixup", type=float, metavar="ALPHA")
    _option(group, "--cutmix", dest="cutmix", type=float, metavar="ALPHA")


def _train(args: argparse.Namespace) -> int:
    from imgcls.training.trainer import resume, train

    overrides = {
        f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)
    }
    show_progress = not args.no_progress
    if args.resume:
        unsupported = sorted(set(overrides) - {"epochs"})
        if unsupported:
            raise UserError(f"--resume takes only --epochs; it keeps the run's own "
                            f"{', '.join(unsupported)}")
        resume(args.resume, epochs=overrides.get("epochs"), show_progress=show_progress)
        return 0
    base = TrainConfig.from_yaml(args.config).to_dict() if args.config else {}
    settings = {**base, **overrides}
    if settings.get("init_from") and "model" not in settings:
        settings["model"] = "auto"  # the model file's own network (training.setup)
    config = TrainConfig.from_dict(settings)
    if args.config and "output" not in overrides:
        config.output = None  # repeating a run writes a new run directory
    from imgcls.training.budget import process_started

    # A --time-budget counts from the command's start: imports and loading are the user's time.
    train(config, overwrite=args.overwrite, show_progress=show_progress,
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


def _eval(args: argparse.Namespace) -> int:
    from imgcls.evaluation.evaluate import evaluate_predictions, write_eval_report
    from imgcls.io import write_json

    evaluation = evaluate_predictions(args.model, args.data, split=args.split,
                                      data_dir=args.data_dir)
    metrics = evaluation.metrics
    model_dir = Path(args.model) if Path(args.model).is_dir() else Path(args.model).parent
    output = Path(args.output) if args.output else model_dir / f"eval-{metrics['split']}.json"
    write_json(output, metrics)
    _print_metrics(metrics)
    print(f"metrics written to {output}")
    if not args.no_report:
        report = Path(args.report) if args.report else model_dir / f"eval-{metrics['split']}.html"
        print(f"report written to {write_eval_report(evaluation, report, args.model)}")
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


# --- predict -----------------------------------------------------------------------------

def _add_predict(verbs: argparse._SubParsersAction) -> None:
    command = verbs.add_parser("predict", help="classify images with a model file")
    command.set_defaults(handler=_predict)
    command.add_argument("model", metavar="MODEL", help="a model.safetensors or a run directory")
    command.add_argument("inputs", metavar="IMAGE|DIR", nargs="+")
    command.add_argument("--topk", type=int, default=5)
    command.add_argument("--format", choices=("table", "json", "csv"), default="table")


def _predict(args: argparse.Namespace) -> int:
    from imgcls.predict import Predictor

    if args.topk < 1:
        raise UserError(f"--topk must be at least 1; got {args.topk}")
    predictor = Predictor(args.model)
    predictions = [p.to_dict() for p in predictor.predict(_expand(args.inputs), topk=args.topk)]
    print(_format_predictions(predictions, args.format), end="")
    failed = [p for p in predictions if p.get("error")]
    for item in failed:
        print(f"imgcls: could not read {item['input']}: {item['error']}", file=sys.stderr)
    return 1 if failed else 0


def _expand(inputs: list[str]) -> list[str]:
    """Files as given; folders become the image files below them, sorted."""
    paths: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
                raise UserError(f"folder {path} holds no image files ({suffixes})")
            paths.extend(str(p) for p in found)
        else:
            paths.append(item)
    return paths


def _format_predictions(predictions: list[dict[str, Any]], style: str) -> str:
    if style == "json":
        return json.dumps(predictions, indent=2) + "\n"
    if style == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["input", "label", "score", "topk"])
        for p in predictions:
            topk = ";".join(f"{t['label']}:{t['score']:.6f}" for t in p["topk"])
            score = "" if p["score"] is None else f"{p['score']:.6f}"
            writer.writerow(safe_row([p["input"], p["label"] or "", score, topk]))
        return buffer.getvalue()
    table = Table("input", "label", "score", "top-k")
    for p in predictions:
        topk = ", ".join(f"{t['label']} {t['score']:.3f}" for t in p["topk"])
        score = "" if p["score"] is None else f"{p['score']:.4f}"
        table.add_row(p["input"], p["label"] or f"[red]{p.get('error')}[/]", score, topk)
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
    command.add_argument("--models", type=lambda text: [n for n in text.split(",") if n],
                         help="comma-separated names to list or measure, e.g. resnet20,lenet5")
    command.add_argument("--batch-size", type=int, default=128)
    command.add_argument("--images", type=int, default=60_000,
                         help="training images in an epoch, for the epoch time (default 60000)")
    command.add_argument("--seconds", type=float, default=1.5,
                         help="seconds to time each model's training and inference (--bench)")


def _models(args: argparse.Namespace) -> int:
    from imgcls.models import create_model, get_spec, list_models, mflops, speed

    names = args.models or list_models()
    for name in names:
        get_spec(name)  # an unknown name is a user error before anything is built
    if args.batch_size < 1 or args.images < 1 or args.seconds <= 0:
        raise UserError("--batch-size, --images and --seconds must be positive")
    shape = f"{args.channels}x{args.image_size}x{args.image_size}"
    fits = [name for name in names if get_spec(name).min_size <= args.image_size]
    # Piped output keeps every column whole rather than rich's 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 130)
    too_small = [f"{name} (needs {get_spec(name).min_size} px)"
                 for name in names if name not in fits]
    if too_small:
        console.print(f"left out at {args.image_size} px: {', '.join(too_small)}")
    if not args.bench:
        console.print(_models_table(fits, args, shape))
        return 0
    if not args.models:  # every model would take minutes; the practical ones take seconds each
        fits = [name for name in fits if speed.cpu_practical(mflops(
            create_model(name, num_classes=args.num_classes, in_channels=args.channels,
                         image_size=args.image_size), args.channels, args.image_size))]
    console.print(_bench_table(fits, args, shape))
    return 0


def _models_table(names: list[str], args: argparse.Namespace, shape: str) -> Table:
    from imgcls.models import count_parameters, create_model, get_spec, mflops, speed

    table = Table(
        "model", "family", "parameters", "MFLOPs", "epoch (est.)", "CPU-practical", "compact",
        "ImageNet weights",
        title=f"{shape} input, {args.num_classes} classes",
        caption=f"epoch: {args.images:,} images estimated at {speed.ASSUMED_CPU_GFLOPS:.0f} "
                f"GFLOP/s, 3x the forward FLOPs per training image (a 2-core CPU). "
                f"CPU-practical: a {speed.FASHION_MNIST_TRAIN_IMAGES:,}-image epoch in under "
                f"{speed.PRACTICAL_EPOCH_S / 60:.0f} min. `imgcls models --bench` measures.")
    for name in names:
        model = create_model(name, num_classes=args.num_classes, in_channels=args.channels,
                             image_size=args.image_size)
        spec = get_spec(name)
        cost = mflops(model, args.channels, args.image_size)
        table.add_row(name, spec.family, f"{count_parameters(model):,}", f"{cost:,.1f}",
                      _duration(speed.estimated_epoch_seconds(cost, args.images)),
                      "yes" if speed.cpu_practical(cost) else "no",
                      "yes" if spec.compact else "no",
                      "yes" if spec.torchvision_name else "no")
    return table


def _bench_table(names: list[str], args: argparse.Namespace, shape: str) -> Table:
    import torch

    from imgcls.models import speed

    err = Console(stderr=True)
    table = Table(
        "model", "precision", "memory format", "train images/s", "infer images/s",
        "train GFLOP/s", "epoch",
        title=f"{shape} input, batch {args.batch_size}, threads: {torch.get_num_threads()}, "
              "measured on this machine",
        caption=f"epoch: {args.images:,} training images at the measured rate")
    for name in names:
        err.print(f"measuring {name} ...")
        result = speed.measure_throughput(
            name, image_size=args.image_size, channels=args.channels,
            num_classes=args.num_classes, batch_size=args.batch_size, seconds=args.seconds)
        table.add_row(name, result.precision,
                      "channels_last" if result.channels_last else "contiguous",
                      f"{result.train_images_per_s:,.0f}", f"{result.infer_images_per_s:,.0f}",
                      f"{result.train_gflops:,.1f}", _duration(result.epoch_seconds(args.images)))
    return table


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


if __name__ == "__main__":
    sys.exit(main())
