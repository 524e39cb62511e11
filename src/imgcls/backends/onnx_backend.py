"""A backend that runs an ONNX file (fp32 or int8) under onnxruntime's CPU provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from imgcls.errors import UserError


class OnnxBackend:
    def __init__(self, path: Path, name: str, *, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # one chain of operators: nothing to overlap
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped exceptions
            raise UserError(f"{path} is not a usable ONNX model ({error}); delete it and "
                            "load again to rebuild it") from None
        self.name = name
        self.input_name = self.session.get_inputs()[0].name

    def probabilities(self, images: torch.Tensor, batch_size: int) -> torch.Tensor:
        outputs = [
            self.session.run(None, {self.input_name: chunk.float().numpy()})[0]
            for chunk in images.split(max(batch_size, 1))
        ]
        return torch.from_numpy(np.concatenate(outputs)) if outputs else torch.empty(0, 0)
