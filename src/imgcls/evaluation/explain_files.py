"""`imgcls explain`'s work: image files in; one Grad-CAM overlay PNG per image and top class
out, and explanations.json, the index of what was written with the class probabilities.

A file that is not a usable image is named in the index's `skipped` list with the reason,
and the rest are explained: one bad file among many must not cost the others.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from imgcls.data.decode import try_decode_file
from imgcls.data.file_index import IMAGE_EXTENSIONS
from imgcls.errors import UserError
from imgcls.evaluation.explain import BATCH_IMAGES, Explainer, load_explainer, overlay_png
from imgcls.modelfile.card import ModelCard
from imgcls.utils.files import atomic_path, write_json

INDEX_FILE = "explanations.json"


@dataclass(frozen=True)
class Overlay:
    image: str  # the input path as given
    rank: int  # 1: the most probable class
    label: str
    probability: float
    file: str  # the overlay PNG, inside the output folder


@dataclass(frozen=True)
class Skipped:
    image: str
    reason: str


@dataclass(frozen=True)
class ExplainResult:
    overlays: list[Overlay]
    skipped: list[Skipped]
    index: Path  # explanations.json
    layer: str  # the module whose map was explained


def explain_files(model_path: str | Path, images: Sequence[str | Path], output_dir: str | Path,
                  *, top: int = 1, device: str | None = None) -> ExplainResult:
    """Overlays of `images` (files, or folders of them) for their `top` classes in
    `output_dir`, named <image stem>_top<rank>_<class>.png, and the index beside them."""
    if top < 1:
        raise UserError(f"--top must be at least 1; got {top}")
    explainer, card = load_explainer(model_path, device)
    paths = expand_images(images)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    decoded, skipped = _decode(paths, card)
    stems = _unique_stems([path for path, _ in decoded])
    overlays: list[Overlay] = []
    for start in range(0, len(decoded), BATCH_IMAGES):
        chunk = decoded[start:start + BATCH_IMAGES]
        overlays += _explain_chunk(explainer, card, chunk, stems[start:start + len(chunk)],
                                   output, top)
    index = output / INDEX_FILE
    write_json(index, {"model": str(model_path), "layer": explainer.layer, "top": top,
                       "overlays": [asdict(item) for item in overlays],
                       "skipped": [asdict(item) for item in skipped]})
    return ExplainResult(overlays, skipped, index, explainer.layer)


def expand_images(images: Sequence[str | Path]) -> list[Path]:
    """Files as given; a folder becomes the image files below it, sorted."""
    paths: list[Path] = []
    for item in images:
        path = Path(item)
        if path.is_dir():
            paths += sorted(found for found in path.rglob("*")
                            if found.suffix.lower() in IMAGE_EXTENSIONS and found.is_file())
        else:
            paths.append(path)
    if not paths:
        raise UserError("no images to explain: pass image files or folders holding some")
    return paths


def _decode(paths: list[Path], card: ModelCard
            ) -> tuple[list[tuple[Path, torch.Tensor]], list[Skipped]]:
    """The images as prediction decodes them, and the files that are not usable images."""
    decoded, skipped = [], []
    for path in paths:
        pixels = try_decode_file(path, channels=card.input.channels, size=card.input.size)
        if isinstance(pixels, str):
            skipped.append(Skipped(str(path), pixels))
        else:
            decoded.append((path, pixels))
    return decoded, skipped


def _explain_chunk(explainer: Explainer, card: ModelCard,
                   chunk: list[tuple[Path, torch.Tensor]], stems: list[str], output: Path,
                   top: int) -> list[Overlay]:
    images = torch.stack([pixels for _, pixels in chunk])
    explanation = explainer.explain(images, top)
    overlays = []
    for row, ((path, pixels), stem) in enumerate(zip(chunk, stems, strict=True)):
        for rank, (label_index, heat) in enumerate(
                zip(explanation.classes[row].tolist(), explanation.heat_maps[row], strict=True),
                start=1):
            label = card.class_names[label_index]
            target = output / f"{stem}_top{rank}_{_file_safe(label)}.png"
            with atomic_path(target) as temporary:
                temporary.write_bytes(overlay_png(pixels, heat))
            probability = float(explanation.probabilities[row, label_index])
            overlays.append(Overlay(str(path), rank, label, probability, target.name))
    return overlays


def _unique_stems(paths: list[Path]) -> list[str]:
    """File-name stems, made unique (a/x.png and b/x.png: x and x-2) and safe as names."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = _file_safe(path.stem)
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "image"
