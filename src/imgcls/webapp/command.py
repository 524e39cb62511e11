"""`imgcls export MODEL --format web`: write the phone app with the smallest model that keeps
the accuracy (int8 where its check passes: shipped.py), and find what the app weighs and how
long its model takes for one image in the browser (latency.py); an fp32 model is checked
against the original model as the other exports are. The CLI (cli/serve.py) prints the
result."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from imgcls.predict.parity import Parity, check_parity
from imgcls.webapp.build import INFO_FILE, MODEL_FILE, build_web_app
from imgcls.webapp.latency import Latency, measure_latency
from imgcls.webapp.runtime import RUNTIME_FOLDER
from imgcls.webapp.shipped import Int8Request, ShippedModel, choose_model


@dataclass(frozen=True)
class WebExport:
    shipped: ShippedModel  # which model the app ships, and why
    folder: Path | None  # None: --quantize int8 was refused and nothing was written
    size: str = ""  # describe_size's line for the folder
    latency: Latency | None = None  # None: not measured (latency_runs 0)
    parity: Parity | None = None  # None: not checked (see export_web)

    @property
    def refused(self) -> bool:
        return self.folder is None

    @property
    def parity_holds(self) -> bool:
        return self.parity is None or self.parity.holds


def default_folder(model_path: str | Path) -> Path:
    """Beside the model: runs/x/model.safetensors or runs/x -> runs/x/model-web."""
    source = Path(model_path)
    if source.is_dir():
        source = source / "model.safetensors"
    return source.with_name(source.name.split(".")[0] + "-web")


def export_web(model_path: str | Path, output: str | Path | None = None, *,
               quantize: str | None = None, int8: Int8Request | None = None,
               check_samples: int = 256, latency_runs: int = 10) -> WebExport:
    """The app in `output` (default_folder when None). quantize: None, "int8" or "none"
    (shipped.choose_model; int8: its check's data and thresholds, by default the flags'
    defaults); latency_runs 0 and check_samples 0 skip those steps."""
    shipped = choose_model(model_path, quantize, int8 or Int8Request())
    if shipped.refused:
        return WebExport(shipped, None)
    folder = build_web_app(model_path, output or default_folder(model_path), onnx=shipped.onnx)
    size = describe_size(folder)  # what was built, before anything else runs there
    latency = measure_latency(folder, latency_runs) if latency_runs > 0 else None
    return WebExport(shipped, folder, size, latency,
                     _parity(model_path, folder, shipped, check_samples))


def _parity(model_path: str | Path, folder: Path, shipped: ShippedModel,
            samples: int) -> Parity | None:
    if samples <= 0 or Path(model_path).suffix.lower() == ".onnx":
        return None  # an .onnx model is copied as it is: nothing to compare it with
    if shipped.precision == "int8":
        return None  # its own check (test split, against fp32) is the one that holds for it
    return _check_model(model_path, folder, samples)


def describe_size(folder: Path) -> str:
    """`14.6 MB: runtime 14.3 MB, model 0.29 MB, page 0.03 MB` (1 MB = 10^6 bytes)."""
    sizes = {path: path.stat().st_size for path in folder.rglob("*") if path.is_file()}
    runtime = sum(size for path, size in sizes.items() if path.parent.name == RUNTIME_FOLDER)
    model = sizes.get(folder / MODEL_FILE, 0)
    total = sum(sizes.values())
    return (f"{total / 1e6:.1f} MB: runtime {runtime / 1e6:.1f} MB, model {model / 1e6:.2f} MB, "
            f"page and icons {(total - runtime - model) / 1e6:.2f} MB")


def _check_model(model_path: str | Path, folder: Path, samples: int) -> Parity:
    """The app's model.onnx against the model file, on seeded random images."""
    shape = json.loads((folder / INFO_FILE).read_text("utf-8"))["input"]
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (samples, shape["channels"], shape["height"], shape["width"]),
                           generator=generator).to(torch.uint8)
    return check_parity(model_path, folder / MODEL_FILE, images, "random images")
