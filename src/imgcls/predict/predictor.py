"""Predictor: a model file ready to classify images, with exactly the preprocessing that
training and evaluation used (decode -> channels/size -> normalization from the file).

One class for every model file, numpy inside:
- an `.onnx` file from `imgcls export` (or a model file's cached export: `open_predictor`)
  runs on its onnxruntime session (export/session.py, OnnxRunner). The exported graph holds
  the normalization and the softmax, so the Predictor only decodes (data/pixels.py), and
  nothing imports torch: `imgcls predict MODEL.onnx` answers in a quarter of a second and
  `imgcls serve MODEL.onnx` idles in a fraction of torch's memory (bench/cold_start.py);
- a `model.safetensors` runs under a backend of imgcls.predict.backends, and only then is
  torch imported.
Only JPEGs that libjpeg cannot shrink decode differently: torchvision resizes them for a
model.safetensors (as training did), PIL for an .onnx file (mean |difference| under 1 level
of 255; PNGs and the rest are identical). `to_uint8`, `outputs` and `probabilities` give
torch tensors, for callers that work in torch (evaluation, parity checks).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from imgcls.data.pixels import (
    BadImageError,
    DecodeBudget,
    UndraftedJpeg,
    decode_file,
    to_uint8_array,
)
from imgcls.errors import UserError
from imgcls.export.int8_embedded import refuse_if_untrusted
from imgcls.export.session import OnnxRunner
from imgcls.modelfile.card import ModelCard
from imgcls.modelfile.rundir import resolve_model_path
from imgcls.predict.backends.cached_onnx import cached_onnx
from imgcls.predict.backends.timing import DEFAULT_BATCH_SIZES
from imgcls.predict.prediction import (
    CARD,
    Prediction,
    answer,
    parse_reject_below,
    rejection_threshold,
)
from imgcls.utils.cpus import usable_cpus

if TYPE_CHECKING:  # torch is imported only for a model.safetensors
    import torch

    from imgcls.predict.backends.base import Backend
    from imgcls.predict.inference import Outputs
    from imgcls.runtime import Requested, RuntimeChoice

ImageInput = Any  # str | Path | PIL.Image.Image | np.ndarray | torch.Tensor
# What an .onnx file runs under: onnxruntime whatever of these is asked (the CLI's default
# `auto` included); any other backend needs the model.safetensors.
ONNX_FILE_BACKENDS = ("torch", "auto", "onnx")
_log = logging.getLogger("imgcls")


class Predictor:
    """`backend`: how a model.safetensors runs (imgcls.predict.backends: torch, torch-folded,
    torch-jit, onnx, onnx-int8, or auto, timed at `batch_sizes`); an .onnx file always runs
    under onnxruntime. `threads`: onnxruntime's, and torch's when given (None: as they are)."""

    def __init__(self, path: str | Path, *, device: str | None = None, backend: str = "torch",
                 batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
                 threads: int | None = None) -> None:
        self.runtime: RuntimeChoice | None = None  # torch's choices; None under onnxruntime
        self.device: Any = "cpu"  # onnxruntime's CPU provider; a torch.device under torch
        self.undrafted_jpeg: UndraftedJpeg | None = None  # PIL's resize (no torchvision)
        if is_onnx(path):
            if backend not in ONNX_FILE_BACKENDS:
                raise UserError(f"--backend {backend} needs a model.safetensors; {path} is "
                                "an ONNX file, which runs under onnxruntime")
            runner = OnnxRunner(path, threads=threads)
            refuse_if_untrusted(runner)  # an int8 file checked on a CPU of another kind
            self.card = ModelCard.from_header(runner.imgcls_header(), origin=str(path))
            self.backend: Backend = runner  # numpy in and out: a backend as it stands
        else:
            self.backend = self._open_torch(path, device, backend, batch_sizes, threads)
        self.class_names: list[str] = self.card.class_names
        self.channels: int = self.card.input.channels
        self.image_size: int = self.card.input.size
        self.budget = DecodeBudget()  # PIL's pixel limit; big images reduced early

    def _open_torch(self, path: str | Path, device: str | None, backend: str,
                    batch_sizes: Sequence[int], threads: int | None) -> Backend:
        import torch

        from imgcls.data.decode import torchvision_jpeg
        from imgcls.data.normalize import Normalizer
        from imgcls.modelfile.artifact import load_model, model_file
        from imgcls.models import get_spec
        from imgcls.predict.backends import BackendInputs, open_backend
        from imgcls.runtime import resolve

        if threads:
            torch.set_num_threads(threads)
        model, self.card = load_model(path)
        # As in training: oneDNN's convolutions are faster on NHWC at inference too
        # (vgg11_bn, 32 px, 2-core AVX2 CPU: batch 32 1.3-1.4x, batch 1 1.1x).
        self.runtime = resolve(prediction_request(self.card, device),
                               get_spec(self.card.model_name))
        self.device = self.runtime.device
        self.model = self.runtime.place(model)
        self.normalizer = Normalizer(self.card.normalization).to(self.device)
        self.undrafted_jpeg = torchvision_jpeg  # the decoder training used for such JPEGs
        inputs = BackendInputs(model_file(path), self.model, self.card, self.runtime,
                               self.normalizer)
        return open_backend(backend, inputs, batch_sizes=batch_sizes)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def metadata(self) -> dict[str, Any]:
        """The card as the JSON document of the file's header (its `imgcls` key)."""
        return self.card.to_header()

    def pixels(self, image: ImageInput) -> np.ndarray:
        """One input as the uint8 [C, H, W] array the model takes."""
        if isinstance(image, (str, Path)):
            # The decoder training used for files (JPEGs decode at reduced scale there);
            # over the budget's size, reduced early as `imgcls serve` does (same pixels).
            return decode_file(image, channels=self.channels, size=self.image_size,
                               budget=self.budget, undrafted_jpeg=self.undrafted_jpeg)
        if _is_tensor(image):
            image = image.detach().cpu().numpy()
        if isinstance(image, np.ndarray):
            image = _array_to_pil(image)
        return to_uint8_array(image, channels=self.channels, size=self.image_size)

    def array_outputs(self, pixels: np.ndarray,
                      batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities [N, K] and familiarity [N] (None: an export without it) for uint8
        (or float 0..255) pixels [N, C, H, W]; calibrated when the card has a temperature."""
        return self.backend.outputs(pixels, batch_size)

    def to_uint8(self, image: ImageInput) -> torch.Tensor:
        """`pixels` as a tensor, for callers that work in torch."""
        import torch

        return torch.from_numpy(self.pixels(image))

    def outputs(self, images: torch.Tensor, batch_size: int = 256) -> Outputs:
        """`array_outputs` in tensors (familiarity NaN from an export that lacks it)."""
        from imgcls.predict.inference import Outputs

        return Outputs.from_numpy(*self.array_outputs(images.numpy(), batch_size))

    def probabilities(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Class probabilities [N, K] of `outputs`."""
        return self.outputs(images, batch_size).probabilities

    def predict(self, images: ImageInput | Sequence[ImageInput], topk: int = 5, *,
                reject_below: float | str = CARD) -> list[Prediction]:
        """Top-k labels for paths, PIL images or arrays; a bad input gets an error, not a crash.
        `reject_below`: the familiarity under which the answer is "unknown" ("card": the
        model card's threshold; "off": never)."""
        threshold = rejection_threshold(self.card.trust, parse_reject_below(reject_below))
        inputs = [images] if _is_single(images) else list(images)
        results = [Prediction(_describe(item), None, None, []) for item in inputs]
        decoded: dict[int, np.ndarray] = {}
        for index, item in enumerate(inputs):
            try:
                decoded[index] = self.pixels(item)
            except (BadImageError, ValueError, TypeError, OSError) as error:
                results[index].error = getattr(error, "reason", None) or str(error)
        if decoded:
            rows, familiarity = self.array_outputs(np.stack(list(decoded.values())))
            for row, index in enumerate(decoded):
                results[index] = answer(
                    _describe(inputs[index]), rows[row],
                    None if familiarity is None else float(familiarity[row]),
                    self.class_names, topk, trust=self.card.trust, threshold=threshold)
        return results


def open_predictor(path: str | Path, *, backend: str = "torch", device: str | None = None,
                   batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, threads: int | None = None,
                   warn: Callable[[str], None] | None = None) -> Predictor:
    """The one place that decides how a model file runs (`imgcls predict`, `imgcls serve`):
    an .onnx file under onnxruntime; on the CPU, a model file (or run directory) whose cached
    fp32 export `backend` would run at every one of `batch_sizes` (backends/cached_onnx.py)
    on that export, without importing torch; anything else under torch, whose backend builds
    that cache. A damaged cache file is told to `warn` (default: the log), and torch runs the
    model instead."""
    if not is_onnx(path) and device in (None, "cpu"):  # a GPU runs under torch
        export = cached_onnx(resolve_model_path(path), backend, batch_sizes,
                             threads or usable_cpus())
        if export is not None:
            try:
                return Predictor(export, threads=threads)
            except UserError as error:  # onnxruntime cannot load it
                (warn or _log.warning)(str(error))
    return Predictor(path, device=device, backend=backend, batch_sizes=batch_sizes,
                     threads=threads)


def is_onnx(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def prediction_request(card: ModelCard, device: str | None) -> Requested:
    """How a model file runs: in fp32 (the numbers training's final evaluation reported), in
    the memory format it was trained in. A file from before the card recorded that runs in
    its network's own default, as prediction always did for it."""
    from imgcls.runtime import Requested

    recorded = card.runtime.channels_last if card.runtime is not None else True
    return Requested(device=device, precision="fp32", channels_last=recorded)


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported
    return torch is not None and isinstance(value, torch.Tensor)


def _is_single(images: Any) -> bool:
    return isinstance(images, (str, Path, Image.Image, np.ndarray)) or _is_tensor(images)


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
