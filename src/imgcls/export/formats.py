"""The export formats' names and file suffixes, and which export a command's flags ask for
(plan_export), without torch: the CLI's parser offers the formats as choices, and
`imgcls --help` must not wait a second for torch to be imported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


@dataclass(frozen=True)
class ExportPlan:
    """What `imgcls export` runs for its flags, and the imgcls[serve] packages it needs
    before it starts (checked first, so a missing one is the error, not a half-done export)."""

    kind: Literal["web", "int8", "file"]
    flag: str  # the flag that asks for `packages`, named in the error when one is missing
    packages: tuple[str, ...]


def plan_export(format: str, quantize: str | None, check_samples: int) -> ExportPlan:
    """--format web decides int8 itself (webapp/shipped.py); otherwise --quantize int8 writes
    an int8 ONNX file whatever --format says; otherwise the file of --format."""
    if format == "web":
        return ExportPlan("web", "--format web", ("onnx", "onnxscript", "onnxruntime"))
    if quantize == "int8":
        return ExportPlan("int8", "--quantize int8", ("onnx", "onnxruntime"))
    if format == "onnx":  # torch's exporter writes through onnx and onnxscript
        checked = ("onnxruntime",) if check_samples > 0 else ()  # the parity check runs it
        return ExportPlan("file", "--format onnx", ("onnx", "onnxscript", *checked))
    return ExportPlan("file", f"--format {format}", ())
