"""`imgcls export MODEL --format web`: write the phone app with the smallest model that keeps
the accuracy (int8 where its check passes: shipped.py), say which and why, what the app weighs
and how long its model takes for one image in the browser (latency.py); an fp32 model is
checked against the original model as the other exports are."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from imgcls.evaluation.int8_export import EXIT_REFUSED
from imgcls.webapp.build import INFO_FILE, MODEL_FILE, build_web_app
from imgcls.webapp.latency import measure_latency
from imgcls.webapp.runtime import RUNTIME_FOLDER
from imgcls.webapp.shipped import choose_model

_PARITY_LIMIT = 1e-4  # as the ONNX export's own check


def default_folder(model_path: str | Path) -> Path:
    """Beside the model: runs/x/model.safetensors or runs/x -> runs/x/model-web."""
    source = Path(model_path)
    if source.is_dir():
        source = source / "model.safetensors"
    return source.with_name(source.name.split(".")[0] + "-web")


def export_web(args: argparse.Namespace) -> int:
    """The export verb's handler for --format web (args: model, output, check_samples,
    latency_runs and shipped.choose_model's)."""
    shipped = choose_model(args)
    if shipped.refused:
        print(f"imgcls: refusing the int8 model: {shipped.reason}", file=sys.stderr)
        return EXIT_REFUSED
    folder = build_web_app(args.model, args.output or default_folder(args.model),
                           onnx=shipped.onnx)
    print(shipped.describe())
    print(f"exported the web app to {folder} ({describe_size(folder)})")
    if args.latency_runs > 0:
        print(measure_latency(folder, args.latency_runs).describe())
    print(f"serve the folder over HTTPS (or on localhost) for offline use, e.g. "
          f"`python -m http.server -d {folder}` and open http://localhost:8000/")
    if args.check_samples <= 0 or Path(args.model).suffix.lower() == ".onnx":
        return 0  # an .onnx model is copied as it is: nothing to compare it with
    if shipped.precision == "int8":
        return 0  # its own check (test split, against fp32) is the one that holds for it
    return _check_model(args.model, folder, args.check_samples)


def describe_size(folder: Path) -> str:
    """`14.6 MB: runtime 14.3 MB, model 0.29 MB, page 0.03 MB` (1 MB = 10^6 bytes)."""
    sizes = {path: path.stat().st_size for path in folder.rglob("*") if path.is_file()}
    runtime = sum(size for path, size in sizes.items() if path.parent.name == RUNTIME_FOLDER)
    model = sizes.get(folder / MODEL_FILE, 0)
    total = sum(sizes.values())
    return (f"{total / 1e6:.1f} MB: runtime {runtime / 1e6:.1f} MB, model {model / 1e6:.2f} MB, "
            f"page and icons {(total - runtime - model) / 1e6:.2f} MB")


def _check_model(model_path: str | Path, folder: Path, samples: int) -> int:
    """The app's model.onnx against the model file, on seeded random images."""
    from imgcls.predict.parity import check_parity

    shape = json.loads((folder / INFO_FILE).read_text("utf-8"))["input"]
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (samples, shape["channels"], shape["height"], shape["width"]),
                           generator=generator).to(torch.uint8)
    parity = check_parity(model_path, folder / MODEL_FILE, images, "random images")
    print(parity.describe())
    if parity.top1_agreement < 1 or parity.max_abs_difference > _PARITY_LIMIT:
        print("imgcls: warning: the web app's model differs from the model more than expected",
              file=sys.stderr)
        return 1
    return 0
