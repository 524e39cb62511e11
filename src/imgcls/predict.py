"""Predictor: a model file ready to classify images, with exactly the preprocessing that
training and evaluation used (decode -> channels/size -> normalization from the file)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from imgcls.artifact import load_model
from imgcls.data.decode import BadImageError, open_image, to_uint8_chw
from imgcls.data.normalize import Normalizer
from imgcls.inference import predict_probabilities
from imgcls.training.runtime import pick_device

ImageInput = str | Path | Image.Image | np.ndarray | torch.Tensor


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


class Predictor:
    def __init__(self, path: str | Path, *, device: str | None = None) -> None:
        self.device = pick_device(device)
        model, self.metadata = load_model(path)
        self.model = model.to(self.device)
        self.normalizer = Normalizer(self.metadata["normalization"]).to(self.device)
        self.class_names: list[str] = self.metadata["class_names"]
        self.channels: int = self.metadata["input"]["channels"]
        self.image_size: int = self.metadata["input"]["height"]

    def to_uint8(self, image: ImageInput) -> torch.Tensor:
        """One input as the uint8 [C, H, W] tensor the model takes."""
        if isinstance(image, (str, Path)):
            image = open_image(image)
        elif isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        if isinstance(image, np.ndarray):
            image = _array_to_pil(image)
        return to_uint8_chw(image, channels=self.channels, size=self.image_size)

    def probabilities(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Class probabilities [N, K] for uint8 images already at the model's input format."""
        return predict_probabilities(
            self.model, self.normalizer, images, batch_size=batch_size, device=self.device
        )

    def predict(self, images: ImageInput | Sequence[ImageInput], topk: int = 5) -> list[Prediction]:
        """Top-k labels for paths, PIL images or arrays; a bad input gets an error, not a crash."""
        inputs = [images] if _is_single(images) else list(images)
        tensors, errors = self._decode_all(inputs)
        good = [index for index, tensor in enumerate(tensors) if tensor is not None]
        results: list[Prediction] = [
            Prediction(_describe(item), None, None, [], errors.get(index))
            for index, item in enumerate(inputs)
        ]
        if good:
            probabilities = self.probabilities(torch.stack([tensors[i] for i in good]))
            for index, row in zip(good, probabilities, strict=True):
                results[index] = self._prediction(_describe(inputs[index]), row, topk)
        return results

    def _decode_all(
        self, inputs: Iterable[ImageInput]
    ) -> tuple[list[torch.Tensor | None], dict[int, str]]:
        tensors: list[torch.Tensor | None] = []
        errors: dict[int, str] = {}
        for index, item in enumerate(inputs):
            try:
                tensors.append(self.to_uint8(item))
            except (BadImageError, ValueError, TypeError, OSError) as error:
                tensors.append(None)
                errors[index] = getattr(error, "reason", None) or str(error)
        return tensors, errors

    def _prediction(self, name: str, row: torch.Tensor, topk: int) -> Prediction:
        scores, indices = row.topk(min(topk, len(self.class_names)))
        ranked = [
            {"label": self.class_names[i], "score": float(s)}
            for s, i in zip(scores.tolist(), indices.tolist(), strict=True)
        ]
        return Prediction(name, ranked[0]["label"], ranked[0]["score"], ranked)


def _is_single(images: Any) -> bool:
    return isinstance(images, (str, Path, Image.Image, np.ndarray, torch.Tensor))


def _describe(item: ImageInput) -> str:
    if isinstance(item, (str, Path)):
        return str(item)
    return f"<{type(item).__name__}>"


def _array_to_pil(array: np.ndarray) -> Image.Image:
    """HxW, HxWxC or CxHxW arrays; floats in [0, 1] are scaled to 0..255."""
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3):
        raise ValueError(f"an image array must be HxW or HxWxC; got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        array = np.clip(array * 255 if array.max() <= 1 else array, 0, 255).round()
    return Image.fromarray(np.ascontiguousarray(array.astype(np.uint8)))


def load(path: str | Path, *, device: str | None = None) -> Predictor:
    return Predictor(path, device=device)
