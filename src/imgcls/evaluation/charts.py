"""The report's pictures: matplotlib figures (confusion matrix, training curves, reliability
diagram, mistakes grid) and image thumbnails, all as PNG bytes.

Figures are built with matplotlib's object API (`Figure`, rendered by Agg) rather than
pyplot: no global backend switch, no figure registry to leak memory in a long process.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from imgcls.evaluation.calibration import ReliabilityBins

DPI = 100
_ANNOTATE_UP_TO = 20  # classes; past this the numbers in the cells are unreadable
_CURVES = (  # panel title, history keys, y label
    ("loss", ("train_loss", "val_loss"), "cross-entropy"),
    ("accuracy", ("train_acc", "val_acc"), "accuracy"),
    ("learning rate", ("lr",), "lr"),
)


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def confusion_figure(matrix: np.ndarray, class_names: list[str], *, normalized: bool) -> Figure:
    """Heatmap of the confusion matrix (rows = true): counts, or each row as fractions."""
    counts = np.asarray(matrix, dtype=np.float64)
    values = _row_normalize(counts) if normalized else counts
    side = min(4 + 0.5 * len(class_names), 16)
    figure = Figure(figsize=(side + 1, side), layout="constrained")
    axes = figure.add_subplot()
    shown = axes.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalized else None)
    figure.colorbar(shown, ax=axes, shrink=0.8)
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("confusion matrix, row-normalized" if normalized else "confusion matrix")
    if len(class_names) <= _ANNOTATE_UP_TO:
        _annotate(axes, values, normalized)
    return figure


def curves_figure(history: list[dict[str, Any]]) -> Figure:
    """Loss, accuracy and learning rate per epoch, one panel each."""
    figure = Figure(figsize=(12, 3.6), layout="constrained")
    panels = figure.subplots(1, len(_CURVES))
    epochs = [row["epoch"] for row in history]
    for axes, (title, keys, label) in zip(panels, _CURVES, strict=True):
        for key in keys:
            points = [(epoch, row[key]) for epoch, row in zip(epochs, history, strict=True)
                      if row.get(key) is not None]
            if points:
                axes.plot(*zip(*points, strict=True), marker="o", markersize=3, label=key)
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        if axes.has_data() and len(keys) > 1:
            axes.legend()
    return figure


def reliability_figure(table: ReliabilityBins, ece: float, stage: str = "") -> Figure:
    """Accuracy per confidence bin against the diagonal a calibrated model follows."""
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.add_subplot()
    widths = np.diff(table.edges)
    filled = table.count > 0
    axes.bar(table.edges[:-1][filled], table.accuracy[filled], width=widths[filled],
             align="edge", edgecolor="black", color="#4c78a8", label="accuracy")
    # The gap is hatched, not filled, so it reads the same above a bar (overconfident) as
    # inside it (underconfident).
    low = np.minimum(table.confidence, table.accuracy)[filled]
    axes.bar(table.edges[:-1][filled], np.abs(table.confidence - table.accuracy)[filled],
             bottom=low, width=widths[filled], align="edge", facecolor="none", hatch="//",
             edgecolor="#e45756", label="gap to confidence")
    axes.plot([0, 1], [0, 1], linestyle="--", color="gray", label="calibrated")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"reliability diagram{' ' + stage if stage else ''} (ECE {ece:.4f})")
    # Below the axes: inside, it would hide bars wherever the model's confidence lies.
    figure.legend(loc="outside lower center", ncols=3, fontsize=8)
    return figure


def image_grid_figure(
    images: torch.Tensor, captions: Sequence[str], *, title: str = "", columns: int = 6
) -> Figure:
    """uint8 images [N, C, H, W] in a grid, each titled with its caption."""
    rows = max(1, -(-len(images) // columns))
    figure = Figure(figsize=(columns * 1.9, rows * 2.3 + 0.4), layout="constrained")
    figure.suptitle(title)
    for position, axes in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        axes.set_axis_off()
        if position < len(images):
            picture, colour_map = _displayable(images[position])
            axes.imshow(picture, cmap=colour_map, vmin=0, vmax=255)
            axes.set_title(captions[position], fontsize=8)
    return figure


def thumbnail_png(image: torch.Tensor, max_side: int = 96) -> bytes:
    """A uint8 [C, H, W] image as PNG, shrunk so its longer side is at most `max_side`
    (small images stay as they are: the page enlarges them without blurring)."""
    picture, _ = _displayable(image)
    pil = Image.fromarray(picture)
    if max(pil.size) > max_side:
        pil.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _displayable(image: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """[H, W] with a gray colour map for one channel, [H, W, 3] otherwise."""
    array = image.detach().cpu().numpy()
    if array.shape[0] == 1:
        return array[0], "gray"
    return np.ascontiguousarray(array[:3].transpose(1, 2, 0)), None


def _row_normalize(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(axis=1, keepdims=True)
    # A class absent from the data has an all-zero row: show zeros, not NaN.
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _annotate(axes: Any, values: np.ndarray, normalized: bool) -> None:
    brightest = values.max() if values.size else 0
    for (row, column), value in np.ndenumerate(values):
        if value == 0:
            continue  # empty cells stay blank so the mistakes stand out
        text = f"{value:.2f}" if normalized else f"{int(value)}"
        colour = "white" if brightest and value > brightest / 2 else "black"
        axes.text(column, row, text, ha="center", va="center", fontsize=8, color=colour)
