"""report.html: one self-contained page (images as data URIs, CSS and a few lines of JS
inline, nothing fetched) that shows what a model gets wrong; plus the same charts as PNG
files and mistakes.csv beside it, so labels can be fixed from a spreadsheet.

The numbers on the page are metrics.json's, carried verbatim in `data-value` attributes
(repr of the float) so a test, or a script, can read them back exactly.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import torch

from imgcls.evaluation import charts
from imgcls.evaluation.calibration import (
    ReliabilityBins,
    expected_calibration_error,
    reliability_bins,
)
from imgcls.evaluation.explain import Explainer, overlay_pixels
from imgcls.evaluation.mistakes import (
    ConfusedPair,
    Mistake,
    confused_pairs,
    list_mistakes,
    mistakes_csv,
)
from imgcls.modelfile.rundir import RunDir
from imgcls.utils.files import atomic_path, write_text

MAX_MISTAKES = 24  # images in the mistakes grid (mistakes.csv lists them all)
MAX_PAIRS = 6  # confused class pairs shown
PAIR_EXAMPLES = 6  # thumbnails per pair
MAX_DOCTOR_ROWS = 50  # the doctor's findings listed; its JSON report holds them all

# metrics.json key -> label, in the order the summary shows them.
SUMMARY_METRICS = (
    ("accuracy", "accuracy"),
    ("top5_accuracy", "top-5 accuracy"),
    ("precision_macro", "precision (macro)"),
    ("recall_macro", "recall (macro)"),
    ("f1_macro", "F1 (macro)"),
    ("precision_weighted", "precision (weighted)"),
    ("recall_weighted", "recall (weighted)"),
    ("f1_weighted", "F1 (weighted)"),
    ("num_samples", "samples"),
)
PER_CLASS_COLUMNS = ("precision", "recall", "f1", "support")
CHART_FILES = {  # chart -> file name in the output folder
    "confusion": "confusion.png",
    "confusion_normalized": "confusion_normalized.png",
    "curves": "curves.png",
    "reliability": "reliability.png",
    "reliability_uncalibrated": "reliability_uncalibrated.png",
    "mistakes": "mistakes.png",
}


@dataclass(frozen=True)
class Thumb:
    """A picture of one evaluated item, with what the page says about it."""

    uri: str  # data:image/png;base64,...
    mistake: Mistake


def write_report(
    output_dir: Path,
    *,
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    item_ids: Sequence[str],
    images: torch.Tensor,
    metrics: Mapping[str, Any],
    history: list[dict[str, Any]] | None = None,
    summary: Mapping[str, Any] | None = None,
    split_counts: Mapping[str, Mapping[str, int]] | None = None,
    doctor: Mapping[str, Any] | None = None,
    report_name: str = RunDir.REPORT,
    file_prefix: str = "",
    uncalibrated: np.ndarray | None = None,
    explainer: Explainer | None = None,
) -> Path:
    """Write report_name, the charts (CHART_FILES) and mistakes.csv into output_dir, every
    file but the report named with `file_prefix` first; return the report's path.

    probabilities [N, K] and labels [N] are the evaluated predictions, images the uint8
    [N, C, H, W] inputs they were made from, item_ids their ids; metrics is metrics.json's
    document for the same predictions; `uncalibrated`: the same predictions before the
    model's temperature (the calibration section then shows both); `explainer`: the
    network's Grad-CAM, which adds the heat maps of the mistakes shown.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    images = torch.as_tensor(images)
    class_names, item_ids, summary = list(class_names), list(item_ids), dict(summary or {})
    _check_lengths(probabilities, labels, item_ids, images, class_names)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    mistakes = list_mistakes(probabilities, labels, class_names, item_ids)
    write_text(output_dir / f"{file_prefix}mistakes.csv", mistakes_csv(mistakes))
    pairs = confused_pairs(probabilities, labels, class_names, top=MAX_PAIRS,
                           examples=PAIR_EXAMPLES)
    table = reliability_bins(probabilities, labels)
    ece = expected_calibration_error(probabilities, labels)
    pictures = _charts(metrics, class_names, history, table, ece, images, mistakes)
    before = None
    if uncalibrated is not None:
        uncalibrated = np.asarray(uncalibrated, dtype=np.float64)
        before = expected_calibration_error(uncalibrated, labels)
        figure = charts.reliability_figure(reliability_bins(uncalibrated, labels), before,
                                           "before calibration")
        pictures["reliability_uncalibrated"] = charts.png_bytes(figure)
    for name, png in pictures.items():
        _write_bytes(output_dir / f"{file_prefix}{CHART_FILES[name]}", png)

    thumbs = _Thumbs(images)
    shown = mistakes[:MAX_MISTAKES]
    by_index = {mistake.index: mistake for mistake in mistakes}
    page = _template().render(
        title=f"imgcls report: {summary.get('model', 'model')} on "
              f"{summary.get('data', metrics.get('data', 'data'))}",
        summary_metrics=_summary_metrics(metrics, ece),
        summary_facts=_summary_facts(summary),
        per_class=_per_class_rows(metrics),
        per_class_columns=PER_CLASS_COLUMNS,
        # mistakes.png is for the folder; the page shows the grid as captioned thumbnails.
        charts={name: data_uri(png) for name, png in pictures.items() if name != "mistakes"},
        mistakes=[thumbs.of(mistake) for mistake in shown],
        cams=_cam_thumbs(explainer, images, probabilities, shown),
        cam_layer=explainer.layer if explainer is not None else "",
        mistake_count=len(mistakes),
        sample_count=len(labels),
        mistakes_csv=f"{file_prefix}mistakes.csv",
        pairs=[_pair_view(pair, thumbs, by_index) for pair in pairs],
        ece=ece,
        ece_uncalibrated=before,
        temperature=(metrics.get("trust") or {}).get("temperature"),
        bins=_bin_rows(table),
        bin_count=len(table.count),
        split_counts=_split_count_table(split_counts, class_names),
        doctor=_doctor_view(doctor),
        has_history=bool(history),
    )
    report = output_dir / report_name
    write_text(report, page)
    return report


def load_history(path: Path) -> list[dict[str, Any]] | None:
    """history.jsonl's rows; None when the file is absent (a model file evaluated alone)."""
    if not Path(path).is_file():
        return None
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def count_per_split(
    labels: np.ndarray | torch.Tensor,
    class_names: Sequence[str],
    parts: Mapping[str, Sequence[int] | np.ndarray],
) -> dict[str, dict[str, int]]:
    """split -> class -> items: the data set section's table from a split's index lists."""
    labels = np.asarray(labels)
    counts = {}
    for part, indices in parts.items():
        per_class = np.bincount(labels[np.asarray(indices, dtype=np.int64)],
                                minlength=len(class_names))
        counts[part] = {name: int(n) for name, n in zip(class_names, per_class, strict=True)}
    return counts


def _check_lengths(
    probabilities: np.ndarray,
    labels: np.ndarray,
    item_ids: list[str],
    images: torch.Tensor,
    class_names: list[str],
) -> None:
    count = len(labels)
    lengths = {"probabilities": len(probabilities), "item_ids": len(item_ids),
               "images": len(images)}
    wrong = {name: length for name, length in lengths.items() if length != count}
    if wrong:
        raise ValueError(f"write_report got {count} labels but lengths {wrong}")
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_names):
        raise ValueError(f"probabilities must be [N, {len(class_names)}], "
                         f"got {probabilities.shape}")


def _charts(
    metrics: Mapping[str, Any],
    class_names: list[str],
    history: list[dict[str, Any]] | None,
    table: ReliabilityBins,
    ece: float,
    images: torch.Tensor,
    mistakes: list[Mistake],
) -> dict[str, bytes]:
    """Chart name -> PNG; curves only with a history, the mistakes grid only with mistakes."""
    matrix = np.asarray(metrics["confusion_matrix"])
    figures = {
        "confusion": charts.confusion_figure(matrix, class_names, normalized=False),
        "confusion_normalized": charts.confusion_figure(matrix, class_names, normalized=True),
        "reliability": charts.reliability_figure(table, ece),
    }
    if history:
        figures["curves"] = charts.curves_figure(history)
    if mistakes:
        worst = mistakes[:MAX_MISTAKES]
        figures["mistakes"] = charts.image_grid_figure(
            images[[mistake.index for mistake in worst]],
            [f"{m.true} → {m.predicted}\np={m.probability:.3f}" for m in worst],
            title="most confident mistakes: true → predicted, p = probability of the prediction",
        )
    return {name: charts.png_bytes(figure) for name, figure in figures.items()}


def _summary_metrics(metrics: Mapping[str, Any], ece: float) -> list[dict[str, Any]]:
    rows = [{"key": key, "label": label, "value": metrics[key]}
            for key, label in SUMMARY_METRICS if key in metrics]
    rows.append({"key": "ece", "label": "calibration error (ECE)", "value": ece})
    return rows


def _summary_facts(summary: Mapping[str, Any]) -> list[dict[str, str]]:
    """The run's description (model, data, training time, ...) as label/text pairs."""
    facts = []
    for key, value in summary.items():
        if value is None:
            continue
        if key == "training_seconds":
            facts.append({"key": key, "label": "training time", "text": _duration(value)})
        else:
            facts.append({"key": key, "label": key.replace("_", " "), "text": str(value)})
    return facts


def _duration(seconds: float) -> str:
    minutes, rest = divmod(float(seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {rest:.0f} s" if minutes else f"{rest:.1f} s"


def _per_class_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, **row} for name, row in metrics["per_class"].items()]


class _Thumbs:
    """Thumbnails of mistakes, each encoded once though the grid and a pair may both show it."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.made: dict[int, Thumb] = {}

    def of(self, mistake: Mistake) -> Thumb:
        if mistake.index not in self.made:
            png = charts.thumbnail_png(self.images[mistake.index])
            self.made[mistake.index] = Thumb(data_uri(png), mistake)
        return self.made[mistake.index]


def _cam_thumbs(explainer: Explainer | None, images: torch.Tensor, probabilities: np.ndarray,
                shown: list[Mistake]) -> list[Thumb]:
    """Each shown mistake's Grad-CAM for the class it was taken for, over its image: at most
    MAX_MISTAKES images, one backward pass."""
    if explainer is None or not shown:
        return []
    indices = [mistake.index for mistake in shown]
    predicted = torch.as_tensor(probabilities[indices].argmax(axis=1))
    heat_maps = explainer.heat_maps(images[indices], predicted)
    thumbs = []
    for mistake, heat in zip(shown, heat_maps, strict=True):
        blended = torch.from_numpy(overlay_pixels(images[mistake.index], heat)).permute(2, 0, 1)
        thumbs.append(Thumb(data_uri(charts.thumbnail_png(blended)), mistake))
    return thumbs


def _pair_view(
    pair: ConfusedPair, thumbs: _Thumbs, by_index: dict[int, Mistake]
) -> dict[str, Any]:
    return {"true": pair.true, "predicted": pair.predicted, "count": pair.count,
            "examples": [thumbs.of(by_index[index]) for index in pair.examples]}


def _bin_rows(table: ReliabilityBins) -> list[dict[str, Any]]:
    return [
        {"low": float(table.edges[m]), "high": float(table.edges[m + 1]),
         "count": int(table.count[m]), "confidence": float(table.confidence[m]),
         "accuracy": float(table.accuracy[m])}
        for m in range(len(table.count)) if table.count[m] > 0
    ]


def _split_count_table(
    split_counts: Mapping[str, Mapping[str, int]] | None, class_names: list[str]
) -> dict[str, Any] | None:
    """Rows per class, one column per split, and a total row and column."""
    if not split_counts:
        return None
    splits = list(split_counts)
    names = class_names + [name for part in splits for name in split_counts[part]
                           if name not in class_names]
    names = list(dict.fromkeys(names))  # a class the data holds but the model lacks, too
    rows = [{"name": name, "counts": [int(split_counts[part].get(name, 0)) for part in splits]}
            for name in names]
    totals = [sum(row["counts"][column] for row in rows) for column in range(len(splits))]
    return {"splits": splits, "rows": rows, "totals": totals}


def _doctor_view(doctor: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not doctor:
        return None
    problems = list(doctor.get("problems", []))
    return {
        "summary": doctor.get("summary", {}),
        "files_checked": doctor.get("files_checked"),
        "imbalance_ratio": doctor.get("imbalance_ratio"),
        "problems": problems[:MAX_DOCTOR_ROWS],
        "problem_count": len(problems),
        "duplicate_count": len(doctor.get("duplicates", [])),
    }


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)


def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("imgcls.evaluation", "templates"),
        autoescape=True,  # item ids and class names come from file names: escape them
        undefined=jinja2.StrictUndefined,  # a typo in the template fails, not renders blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["fixed"] = _fixed
    return environment.get_template("report.html.j2")


def _fixed(value: Any, digits: int = 4) -> str:
    """A metric as the page shows it: integers as they are, floats to `digits` places."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"
