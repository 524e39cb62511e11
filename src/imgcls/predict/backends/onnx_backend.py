"""A backend that runs an ONNX file (fp32 or int8) from the backend cache under onnxruntime's
CPU provider: the shared session (export/session.py), with torch tensors at its edge."""

from __future__ import annotations

from pathlib import Path

import torch

from imgcls.export.session import OnnxRunner
from imgcls.predict.inference import Outputs


class OnnxBackend:
    def __init__(self, path: Path, name: str, *, threads: int) -> None:
        self.runner = OnnxRunner(path, threads=threads,
                                 broken_hint="delete it and load again to rebuild it")
        self.name = name

    def outputs(self, images: torch.Tensor, batch_size: int) -> Outputs:
        return Outputs.from_numpy(*self.runner.outputs(images.numpy(), batch_size))
