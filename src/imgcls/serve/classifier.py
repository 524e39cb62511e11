"""What the service classifies with: uint8 numpy pixels in, numpy probabilities (and
familiarity, for "none of my classes") out.

An exported .onnx file opens as an OnnxPredictor, and then the serving process never imports
torch (a LeNet-5 service idles in a fraction of the memory; bench/cold_start.py). A
model.safetensors opens as the torch Predictor behind TorchClassifier, which converts at
its edge, so the batcher, the decoding and the routes work on numpy arrays either way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from imgcls.data.pixels import DecodeBudget, UndraftedJpeg
from imgcls.modelfile.card import ModelCard
from imgcls.predict.onnx_predictor import OnnxPredictor, is_onnx, open_cached_export
from imgcls.serve.settings import ServeSettings
from imgcls.utils.cpus import usable_cpus

_log = logging.getLogger("imgcls.serve")

if TYPE_CHECKING:
    from imgcls.predict.predictor import Predictor


class Classifier(Protocol):
    card: ModelCard
    class_names: list[str]
    channels: int
    image_size: int
    budget: DecodeBudget
    undrafted_jpeg: UndraftedJpeg | None  # how JPEGs libjpeg can't shrink are decoded

    @property
    def backend_name(self) -> str: ...

    @property
    def device(self) -> Any: ...

    def to_uint8(self, image: Image.Image) -> np.ndarray: ...

    def outputs(self, pixels: np.ndarray,
                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]: ...


class TorchClassifier:
    """The torch Predictor with numpy at its edge (the tensors share the arrays' memory)."""

    def __init__(self, predictor: Predictor) -> None:
        from imgcls.data.decode import torchvision_jpeg

        self.predictor = predictor
        self.card = predictor.card
        self.class_names = predictor.class_names
        self.channels, self.image_size = predictor.channels, predictor.image_size
        # The Predictor's own JPEG path, so a served image gets `imgcls predict`'s pixels.
        self.undrafted_jpeg: UndraftedJpeg | None = torchvision_jpeg

    @property
    def budget(self) -> DecodeBudget:
        return self.predictor.budget

    @budget.setter
    def budget(self, budget: DecodeBudget) -> None:
        self.predictor.budget = budget

    @property
    def backend_name(self) -> str:
        return self.predictor.backend_name

    @property
    def device(self) -> Any:
        return self.predictor.device

    def to_uint8(self, image: Image.Image) -> np.ndarray:
        return self.predictor.to_uint8(image).numpy()

    def outputs(self, pixels: np.ndarray,
                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        found = self.predictor.outputs(torch.from_numpy(pixels), batch_size)
        return found.probabilities.numpy(), found.familiarity.numpy()


def open_classifier(model_path: str | Path, settings: ServeSettings) -> Classifier:
    """An .onnx file, or a model file whose cached ONNX export the backend would run, without
    torch; anything else through the torch Predictor (which builds that cache)."""
    if is_onnx(model_path):
        return OnnxPredictor(model_path, threads=settings.threads)
    if settings.device in (None, "cpu"):  # a GPU runs under torch
        cached = open_cached_export(model_path, settings.backend, (1, settings.max_batch),
                                    settings.threads or usable_cpus(),
                                    lambda reason: _log.warning("%s", reason))
        if cached is not None:
            return cached
    import torch

    from imgcls.predict.predictor import Predictor

    if settings.threads:
        torch.set_num_threads(settings.threads)
    return TorchClassifier(Predictor(model_path, device=settings.device,
                                     backend=settings.backend,
                                     batch_sizes=(1, settings.max_batch)))
