"""An ONNX file from `imgcls export` (or a backend's cached export) under onnxruntime's CPU
provider: float pixels 0..255 [N, C, H, W] in, probabilities [N, K] out (and familiarity [N],
the second output of files exported since it existed), all numpy.

It imports numpy and onnxruntime only, never torch: an .onnx model then predicts in about
a quarter of a second and serves in a fraction of torch's memory (bench/cold_start.py).
It is the one wrapper of an onnxruntime session: the Predictor runs an .onnx file (or a cached
export) on it, and it is itself a backend (predict/backends/base.py: numpy in and out) for
`--backend onnx` and `onnx-int8`. Torch callers convert at the Predictor's edge
(predict/inference.py, Outputs.from_numpy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from imgcls.errors import UserError
from imgcls.utils.cpus import usable_cpus


class OnnxRunner:
    """`name`: what the Predictor reports as its backend ("onnxruntime" for an .onnx file,
    "onnx" / "onnx-int8" for a backend's cached export)."""

    def __init__(self, path: str | Path, *, threads: int | None = None,
                 name: str = "onnxruntime", broken_hint: str = "export it again") -> None:
        import onnxruntime  # the [serve] extra: imported when an ONNX file is opened

        path = Path(path)
        if not path.is_file():
            raise UserError(f"model file {path} does not exist; pass a file from `imgcls export`")
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or usable_cpus()
        options.inter_op_num_threads = 1  # one chain of operators: nothing to overlap
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped exceptions
            raise UserError(f"{path} is not a usable ONNX model ({error}); "
                            f"{broken_hint}") from None
        self.path = path
        self.name = name
        self.input_name: str = self.session.get_inputs()[0].name
        # An export from before the familiarity output has one output: probabilities.
        self.output_names = [output.name for output in self.session.get_outputs()][:2]

    def probabilities(self, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """float32 probabilities [N, K] for pixels [N, C, H, W] (uint8, or float 0..255)."""
        return self.outputs(pixels, batch_size)[0]

    def outputs(self, pixels: np.ndarray,
                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities [N, K] and familiarity [N] (None: the file has no such output)."""
        step = max(batch_size, 1)
        parts = [
            self.session.run(self.output_names, {self.input_name: pixels[start:start + step]
                                                 .astype(np.float32, copy=False)})
            for start in range(0, len(pixels), step)
        ]
        if not parts:
            return np.empty((0, 0), np.float32), None
        probabilities = np.concatenate([part[0] for part in parts])
        if len(self.output_names) < 2:
            return probabilities, None
        return probabilities, np.concatenate([part[1] for part in parts]).astype(np.float32)

    def imgcls_header(self) -> dict[str, Any]:
        """The model card the export embedded (its `imgcls` metadata), as a JSON document."""
        properties = self.session.get_modelmeta().custom_metadata_map
        if "imgcls" not in properties:
            raise UserError(f"{self.path} has no imgcls metadata; export it with "
                            "`imgcls export`")
        return json.loads(properties["imgcls"])
