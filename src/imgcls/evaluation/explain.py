"""Grad-CAM heat maps: where in an image the evidence for a class lies (issue 26).

Grad-CAM (Selvaraju et al. 2017) weights each channel of the network's last spatial feature
map by the mean gradient of the class's logit over that channel, sums the weighted channels,
keeps the positive part and upsamples it to the image. captum's LayerGradCam computes it;
this module picks the layer, prepares the pixels exactly as prediction does (the card's
Normalizer over uint8 images) and scales each map to [0, 1].

The layer is the registry's `ModelSpec.cam_layer`, named once per family beside `head`,
rather than found by forward hooks at run time: "the last 4-D output" is ambiguous where a
container and its last child return the same tensor, or where a pool resamples the map
(AlexNet's 6x6, VGG's 7x7 adaptive pools), and a name is free, testable and shows in the
answers. One case depends on the image size: where the named map is a single pixel (VGG on
28-32 px images, whose five pools leave 1x1), it cannot say where anything is, so the
deepest earlier map inside the layer that is larger is explained instead.

captum fits every family with two cares. A network with --tta hflip runs its layers twice
per forward (image and mirror) and captum's hook would keep the mirror's map, so the plain
forward is explained (flip_tta.plain_forward); the probabilities are still the model's own.
The layer may be an in-place ReLU (DenseNet's final_activation): captum hands the rest of
the network a clone of the layer's output, so nothing downstream overwrites what it saved.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from imgcls.data.normalize import Normalizer
from imgcls.errors import UserError
from imgcls.modelfile.card import ModelCard
from imgcls.models.flip_tta import plain_forward
from imgcls.predict.inference import predict_probabilities

COLORMAP = "jet"  # Grad-CAM's customary one: blue cold, red hot
OVERLAY_ALPHA = 0.45  # the heat map's weight over the image
# Overlay files are enlarged (pixels repeated) to at least this side: a 32 px overlay is
# too small to read in an image viewer.
OVERLAY_MIN_SIDE = 128
BATCH_IMAGES = 32  # images per backward pass


@dataclass(frozen=True)
class Explanation:
    """The top classes of a batch of images and their heat maps."""

    probabilities: Tensor  # [N, K], the model's (with its test-time average, if any)
    classes: Tensor  # [N, top] class indices, most probable first
    heat_maps: Tensor  # [N, top, H, W] in [0, 1], at the input size


class Explainer:
    """Grad-CAM heat maps of one network (evaluated in eval mode, fp32, on its device)."""

    def __init__(self, model: nn.Module, normalizer: Normalizer, layer: str) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.normalizer = normalizer.to(self.device)
        self.layer = layer  # the explained module's dotted name

    @classmethod
    def for_network(cls, model: nn.Module, normalizer: Normalizer, model_name: str,
                    input_chw: tuple[int, int, int]) -> Explainer:
        """The explainer of a registry network (`model_name`) for inputs [C, H, W]."""
        from imgcls.models import get_spec

        layer = spatial_layer(model, get_spec(model_name).cam_layer, input_chw)
        return cls(model, normalizer, layer)

    def heat_maps(self, images: Tensor, classes: Tensor) -> Tensor:
        """uint8 images [N, C, H, W] and a class index each [N] -> heat maps [N, H, W] in
        [0, 1] on the CPU; one forward and backward pass per BATCH_IMAGES images."""
        maps = [self._grad_cam(chunk, wanted) for chunk, wanted
                in zip(images.split(BATCH_IMAGES), classes.split(BATCH_IMAGES), strict=True)]
        return torch.cat(maps) if maps else torch.empty(0, *images.shape[-2:])

    def explain(self, images: Tensor, top: int = 1) -> Explanation:
        """The `top` most probable classes of each uint8 image [N, C, H, W], with heat maps."""
        probabilities = predict_probabilities(self.model, self.normalizer, images,
                                              device=self.device)
        top = min(top, probabilities.shape[1])
        classes = probabilities.topk(top, dim=1).indices
        # Each image once per class it is explained for: one batch, one backward pass.
        repeated = images.repeat_interleave(top, dim=0)
        maps = self.heat_maps(repeated, classes.reshape(-1))
        return Explanation(probabilities, classes, maps.reshape(len(images), top,
                                                                *maps.shape[-2:]))

    def _grad_cam(self, images: Tensor, classes: Tensor) -> Tensor:
        from captum.attr import LayerAttribution, LayerGradCam

        was_training = self.model.training
        self.model.eval()
        batch = self.normalizer(images.to(self.device))
        cam = LayerGradCam(plain_forward(self.model), self.model.get_submodule(self.layer))
        try:
            with torch.enable_grad():  # callers may run under no_grad; Grad-CAM needs it
                maps = cam.attribute(batch, target=classes.to(self.device),
                                     relu_attributions=True)
        finally:
            self.model.train(was_training)
        maps = LayerAttribution.interpolate(maps.detach().float(), tuple(images.shape[-2:]),
                                            interpolate_mode="bilinear")
        return unit_scale(maps[:, 0]).cpu()


def load_explainer(path: str | Path, device: str | None = None) -> tuple[Explainer, ModelCard]:
    """The explainer of a model file (or run directory) and its card; `device` None: CUDA
    when present, else the CPU. An exported .onnx file is refused (UserError)."""
    from imgcls.modelfile.artifact import load_model
    from imgcls.predict.predictor import is_onnx

    if is_onnx(path):
        raise UserError(f"{path} is an ONNX export; Grad-CAM needs the torch network's "
                        "gradients: pass the model.safetensors (or its run directory)")
    model, card = load_model(path)
    chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(chosen)
    normalizer = Normalizer(card.normalization)
    return Explainer.for_network(model, normalizer, card.model_name, card.input.chw), card


def spatial_layer(model: nn.Module, layer: str, input_chw: tuple[int, int, int]) -> str:
    """`layer`, or where its output is a single pixel, the deepest of its children whose
    output has more (found by one forward pass of a blank image)."""
    sides = _output_sides(model, layer, input_chw)
    if sides.get(layer, 0) > 1:
        return layer
    larger = [name for name, side in sides.items() if name != layer and side > 1]
    return larger[-1] if larger else layer


def _output_sides(model: nn.Module, layer: str,
                  input_chw: tuple[int, int, int]) -> dict[str, int]:
    """Dotted name -> the smaller side of its 4-D output, for `layer` and its children, in
    the order they last ran."""
    target = model.get_submodule(layer)
    modules = {layer: target, **{f"{layer}.{name}": child
                                 for name, child in target.named_children()}}
    sides: dict[str, int] = {}

    def record(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, Tensor) and output.dim() == 4:
                sides.pop(name, None)  # a module run twice counts where it ran last
                sides[name] = min(output.shape[-2:])
        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in modules.items()]
    was_training = model.training
    parameter = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            plain_forward(model)(torch.zeros(1, *input_chw, device=parameter.device,
                                             dtype=parameter.dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return sides


def unit_scale(maps: Tensor) -> Tensor:
    """Each map [N, H, W] divided by its maximum; a map without positive evidence stays 0."""
    peaks = maps.flatten(1).amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)
    return (maps / peaks.view(-1, 1, 1)).clamp(0, 1)


def overlay_pixels(image: Tensor, heat: Tensor, *, alpha: float = OVERLAY_ALPHA,
                   colormap: str = COLORMAP) -> np.ndarray:
    """A uint8 image [C, H, W] (gray or RGB) with its heat map [H, W] in [0, 1] blended
    over it in `colormap`'s colours: uint8 RGB [H, W, 3]."""
    from matplotlib import colormaps

    pixels = image.detach().cpu().numpy().astype(np.float32)
    base = np.repeat(pixels[:1], 3, axis=0) if pixels.shape[0] == 1 else pixels[:3]
    colours = colormaps[colormap](heat.detach().cpu().numpy())[..., :3] * 255
    blended = (1 - alpha) * base.transpose(1, 2, 0) + alpha * colours
    return np.clip(blended.round(), 0, 255).astype(np.uint8)


def overlay_png(image: Tensor, heat: Tensor, *, min_side: int = OVERLAY_MIN_SIDE) -> bytes:
    """overlay_pixels as PNG bytes, enlarged by a whole factor to at least `min_side`."""
    picture = Image.fromarray(overlay_pixels(image, heat), "RGB")
    factor = -(-min_side // min(picture.size))
    if factor > 1:  # nearest: each input pixel stays a sharp square
        picture = picture.resize((picture.width * factor, picture.height * factor),
                                 Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
