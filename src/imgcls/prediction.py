"""One input's answer, and class probabilities ranked into it: torch-free, so the ONNX path
(onnx_predict.py) answers in exactly the Predictor's format without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Prediction:
    input: str
    label: str | None
    score: float | None
    topk: list[dict[str, Any]]
    error: str | None = None  # why this input could not be classified

    def to_dict(self) -> dict[str, Any]:
        document = {"input": self.input, "label": self.label, "score": self.score,
                    "topk": self.topk}
        if self.error:
            document["error"] = self.error
        return document


def ranked(probabilities: np.ndarray, class_names: list[str], topk: int) -> list[dict[str, Any]]:
    """The `topk` most probable classes of one row [K], best first, as {label, score}."""
    count = min(topk, len(class_names))
    # A stable sort of the negated row: ties keep the lower class index first, as torch.topk.
    order = np.argsort(-probabilities, kind="stable")[:count]
    return [{"label": class_names[index], "score": float(probabilities[index])}
            for index in order.tolist()]
