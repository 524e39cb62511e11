"""OnnxPredictor: the Predictor of an exported `.onnx` file, without torch.

The same answers as `Predictor(path)` for that file: the same pixels (data/pixels.py, the
PIL part of the Predictor's decoding), the same onnxruntime session, the same Prediction
format. Only JPEGs that libjpeg cannot shrink are resized by PIL here where the Predictor
uses torchvision (mean |difference| under 1 level of 255; PNGs and the rest are identical).
`imgcls predict MODEL.onnx` and `imgcls serve MODEL.onnx` use it: no second of torch import
and no torch libraries in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from imgcls.data.pixels import BadImageError, DecodeBudget, decode_file, to_uint8_array
from imgcls.errors import UserError
from imgcls.export.int8_embedded import refuse_if_untrusted
from imgcls.export.session import OnnxRunner
from imgcls.modelfile.card import ModelCard
from imgcls.modelfile.rundir import resolve_model_path
from imgcls.predict.backends.cached_onnx import cached_onnx
from imgcls.predict.prediction import (
    CARD,
    Prediction,
    answer,
    parse_reject_below,
    rejection_threshold,
)

OnnxInput = str | Path | Image.Image


class OnnxPredictor:
    backend_name = "onnxruntime"
    device = "cpu"  # onnxruntime's CPU provider
    undrafted_jpeg = None  # JPEGs libjpeg can't shrink are resized by PIL (no torchvision)

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        self.runner = OnnxRunner(path, threads=threads)
        refuse_if_untrusted(self.runner)  # an int8 file checked on a CPU of another kind
        self.card = ModelCard.from_header(self.runner.imgcls_header(), origin=str(path))
        self.class_names: list[str] = self.card.class_names
        self.channels: int = self.card.input.channels
        self.image_size: int = self.card.input.size
        self.budget = DecodeBudget()  # PIL's pixel limit; big images reduced early

    def to_uint8(self, image: OnnxInput) -> np.ndarray:
        """A file or PIL image as the uint8 [C, H, W] array the model takes."""
        if isinstance(image, (str, Path)):
            return decode_file(image, channels=self.channels, size=self.image_size,
                               budget=self.budget)
        return to_uint8_array(image, channels=self.channels, size=self.image_size)

    def probabilities(self, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities [N, K] for uint8 (or float 0..255) pixels [N, C, H, W]."""
        return self.runner.probabilities(pixels, batch_size)

    def outputs(self, pixels: np.ndarray,
                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities [N, K] and familiarity [N] (None: an export without it)."""
        return self.runner.outputs(pixels, batch_size)

    def predict(self, images: OnnxInput | Sequence[OnnxInput], topk: int = 5, *,
                reject_below: float | str = CARD) -> list[Prediction]:
        """Top-k labels for files or PIL images; a bad input gets an error, not a crash.
        `reject_below` as the Predictor's."""
        threshold = rejection_threshold(self.card.trust, parse_reject_below(reject_below))
        inputs = [images] if isinstance(images, (str, Path, Image.Image)) else list(images)
        results = [Prediction(_describe(item), None, None, []) for item in inputs]
        decoded: dict[int, np.ndarray] = {}
        for index, item in enumerate(inputs):
            try:
                decoded[index] = self.to_uint8(item)
            except (BadImageError, ValueError, TypeError, OSError) as error:
                results[index].error = getattr(error, "reason", None) or str(error)
        if decoded:
            rows, familiarity = self.outputs(np.stack(list(decoded.values())))
            for row, index in enumerate(decoded):
                results[index] = answer(
                    _describe(inputs[index]), rows[row],
                    None if familiarity is None else float(familiarity[row]),
                    self.class_names, topk, trust=self.card.trust, threshold=threshold)
        return results


def open_cached_export(model_path: str | Path, backend: str, batch_sizes: Sequence[int],
                       threads: int, warn: Callable[[str], None]) -> OnnxPredictor | None:
    """The cached fp32 export of a model file (or run directory) as an OnnxPredictor, when
    `backend` would run it at every one of `batch_sizes` (backends/cached_onnx.py). None sends
    the caller to the torch Predictor, which builds that cache; so does a damaged cache file,
    after `warn` is told which and why."""
    export = cached_onnx(resolve_model_path(model_path), backend, batch_sizes, threads)
    if export is None:
        return None
    try:
        return OnnxPredictor(export, threads=threads)
    except UserError as error:  # onnxruntime cannot load it: torch runs the model instead
        warn(str(error))
        return None


def is_onnx(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def _describe(item: OnnxInput) -> str:
    return str(item) if isinstance(item, (str, Path)) else f"<{type(item).__name__}>"
