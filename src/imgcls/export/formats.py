"""The export formats' names and file suffixes, without torch: the CLI's parser offers them
as choices, and `imgcls --help` must not wait a second for torch to be imported."""

from __future__ import annotations

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
