"""Predictor: a model file ready to classify images, with exactly the preprocessing that
training and evaluation used (decode -> channels/size -> normalization from the file).

The model file is an imgcls `model.safetensors` (run by torch) or an `.onnx` file written
by `imgcls export` (run by onnxruntime). The exported graph holds the normalization and
the softmax itself (see export.py), so for ONNX the Predictor only decodes and resizes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from imgcls.data.decode import BadImageError, DecodeBudget, decode_file, to_uint8_chw
from imgcls.data.normalize import Normalizer
from imgcls.errors import UserError
from imgcls.export.int8_embedded import refuse_if_untrusted
from imgcls.export.session import OnnxRunner
from imgcls.modelfile.artifact import load_model, model_file
from imgcls.modelfile.card import ModelCard
from imgcls.models import get_spec
from imgcls.predict.backends import DEFAULT_BATCH_SIZES, Backend, BackendInputs, open_backend
from imgcls.predict.inference import Outputs
from imgcls.predict.onnx_predictor import is_onnx
from imgcls.predict.prediction import (
    CARD,
    Prediction,
    answer,
    parse_reject_below,
    rejection_threshold,
)
from imgcls.runtime import Requested, RuntimeChoice, resolve

ImageInput = str | Path | Image.Image | np.ndarray | torch.Tensor


class OnnxModel:
    """An exported `.onnx` file under onnxruntime (export/session.py), at torch's edge: uint8 or
    float tensors 0..255 in, probability tensors out."""

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        self.runner = OnnxRunner(path, threads=threads or torch.get_num_threads())
        refuse_if_untrusted(self.runner)  # an int8 file checked on a CPU of another kind
        self.card = ModelCard.from_header(self.runner.imgcls_header(), origin=str(path))

    def outputs(self, images: torch.Tensor, batch_size: int = 256) -> Outputs:
        return Outputs.from_numpy(*self.runner.outputs(images.numpy(), batch_size))


def prediction_request(card: ModelCard, device: str | None) -> Requested:
    """How a model file runs: in fp32 (the numbers training's final evaluation reported), in
    the memory format it was trained in. A file from before the card recorded that runs in
    its network's own default, as prediction always did for it."""
    recorded = card.runtime.channels_last if card.runtime is not None else True
    return Requested(device=device, precision="fp32", channels_last=recorded)


class Predictor:
    """`backend`: how a model.safetensors runs (imgcls.predict.backends: torch, torch-folded,
    torch-jit, onnx, onnx-int8, or auto, timed at `batch_sizes`); an .onnx file always runs
    under onnxruntime."""

    def __init__(self, path: str | Path, *, device: str | None = None, backend: str = "torch",
                 batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES) -> None:
        self.onnx: OnnxModel | None = None
        self.runtime: RuntimeChoice | None = None  # torch's choices; None under onnxruntime
        self.backend: Backend | None = None  # None for an .onnx file
        if is_onnx(path):
            if backend not in ("torch", "auto", "onnx"):
                raise UserError(f"--backend {backend} needs a model.safetensors; {path} is "
                                "an ONNX file, which runs under onnxruntime")
            self.onnx = OnnxModel(path)
            self.card = self.onnx.card
            self.device = torch.device("cpu")  # onnxruntime's CPU provider
        else:
            model, self.card = load_model(path)
            # As in training: oneDNN's convolutions are faster on NHWC at inference too
            # (vgg11_bn, 32 px, 2-core AVX2 CPU: batch 32 1.3-1.4x, batch 1 1.1x).
            self.runtime = resolve(prediction_request(self.card, device),
                                   get_spec(self.card.model_name))
            self.device = self.runtime.device
            self.model = self.runtime.place(model)
            self.normalizer = Normalizer(self.card.normalization).to(self.device)
            inputs = BackendInputs(model_file(path), self.model, self.card, self.runtime,
                                   self.normalizer)
            self.backend = open_backend(backend, inputs, batch_sizes=batch_sizes)
        self.class_names: list[str] = self.card.class_names
        self.channels: int = self.card.input.channels
        self.image_size: int = self.card.input.size
        self.budget = DecodeBudget()  # PIL's pixel limit; big images reduced early

    @property
    def backend_name(self) -> str:
        return "onnxruntime" if self.backend is None else self.backend.name

    @property
    def metadata(self) -> dict[str, Any]:
        """The card as the JSON document of the file's header (its `imgcls` key)."""
        return self.card.to_header()

    def to_uint8(self, image: ImageInput) -> torch.Tensor:
        """One input as the uint8 [C, H, W] tensor the model takes."""
        if isinstance(image, (str, Path)):
            # The decoder training used for files (JPEGs decode at reduced scale there);
            # over the budget's size, reduced early as `imgcls serve` does (same pixels).
            return decode_file(image, channels=self.channels, size=self.image_size,
                               budget=self.budget)
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        if isinstance(image, np.ndarray):
            image = _array_to_pil(image)
        return to_uint8_chw(image, channels=self.channels, size=self.image_size)

    def probabilities(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Class probabilities [N, K] for uint8 images already at the model's input format
        (or float pixels in 0..255); calibrated when the card has a temperature."""
        return self.outputs(images, batch_size).probabilities

    def outputs(self, images: torch.Tensor, batch_size: int = 256) -> Outputs:
        """Probabilities [N, K] and familiarity [N] (NaN from an export that lacks it)."""
        if self.onnx is not None:
            return self.onnx.outputs(images, batch_size)
        assert self.backend is not None  # set whenever onnx is None
        return self.backend.outputs(images, batch_size)

    def predict(self, images: ImageInput | Sequence[ImageInput], topk: int = 5, *,
                reject_below: float | str = CARD) -> list[Prediction]:
        """Top-k labels for paths, PIL images or arrays; a bad input gets an error, not a crash.
        `reject_below`: the familiarity under which the answer is "unknown" ("card": the
        model card's threshold; "off": never)."""
        threshold = rejection_threshold(self.card.trust, parse_reject_below(reject_below))
        inputs = [images] if _is_single(images) else list(images)
        tensors, errors = self._decode_all(inputs)
        good = [index for index, tensor in enumerate(tensors) if tensor is not None]
        results: list[Prediction] = [
            Prediction(_describe(item), None, None, [], errors.get(index))
            for index, item in enumerate(inputs)
        ]
        if good:
            found = self.outputs(torch.stack([tensors[i] for i in good]))
            for row, index in enumerate(good):
                results[index] = answer(
                    _describe(inputs[index]), found.probabilities[row].numpy(),
                    float(found.familiarity[row]), self.class_names, topk,
                    trust=self.card.trust, threshold=threshold)
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


def load(path: str | Path, *, device: str | None = None, backend: str = "torch") -> Predictor:
    return Predictor(path, device=device, backend=backend)
