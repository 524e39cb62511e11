"""report.html and the files beside it, on predictions built by hand: the numbers on the page
are metrics.json's (and scikit-learn's), the mistakes are the right ones in the right order."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import classification_report

from imgcls.evaluation.metrics import compute_metrics
from imgcls.evaluation.report import CHART_FILES, count_per_split, load_history, write_report

SECTIONS = ("summary", "per-class", "confusion", "curves", "mistakes", "confused-pairs",
            "calibration", "dataset")
NAMES = ["cat", "dog", "bird"]
# Known mistakes (index: true -> predicted, probability of the prediction):
#   2: cat -> dog 0.90;  7: dog -> bird 0.80;  5: bird -> dog 0.60 (p(true) 0.30);
#   9: cat -> dog 0.60 (p(true) 0.05, a higher loss than 5, so it comes first of the two)
MISTAKES = {2: (0, 1, [0.05, 0.90, 0.05]), 7: (1, 2, [0.10, 0.10, 0.80]),
            5: (2, 1, [0.10, 0.60, 0.30]), 9: (0, 1, [0.05, 0.60, 0.35])}
EXPECTED_ORDER = [2, 7, 9, 5]


class _Elements(HTMLParser):
    """Every start tag's attributes, with the data-class of the table row it lies in."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.row_class: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "tr":
            self.row_class = attributes.get("data-class")
        if tag == "td" and self.row_class is not None:
            attributes["row-class"] = self.row_class
        self.elements.append((tag, attributes))


def _elements(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.elements


def _known_set() -> dict:
    """12 items of 3 classes; each image is filled with 10 * its index, to recognise it."""
    labels = np.array([0, 1, 0, 2, 1, 2, 0, 1, 2, 0, 1, 2])
    probabilities = np.full((12, 3), 0.05)
    probabilities[np.arange(12), labels] = 0.90
    for index, (true, _, row) in MISTAKES.items():
        assert labels[index] == true
        probabilities[index] = row
    images = (torch.arange(12, dtype=torch.uint8) * 10).view(12, 1, 1, 1).expand(12, 1, 8, 8)
    item_ids = [f"photos/{NAMES[label]}/{index}<&>.png" for index, label in enumerate(labels)]
    return {"probabilities": probabilities, "labels": labels, "class_names": NAMES,
            "item_ids": item_ids, "images": images.contiguous()}


@pytest.fixture(scope="module")
def known_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    data = _known_set()
    metrics = compute_metrics(data["labels"], data["probabilities"], NAMES)
    output = tmp_path_factory.mktemp("known")
    history = [{"epoch": epoch, "lr": 0.1 / epoch, "train_loss": 1 / epoch, "train_acc": 0.5,
                "val_loss": 1.1 / epoch, "val_acc": 0.4} for epoch in (1, 2, 3)]
    doctor = {"files_checked": 14, "summary": {"errors": 1, "warnings": 1, "notes": 0},
              "problems": [{"path": "cat/broken.jpg", "kind": "truncated", "severity": "error",
                            "reason": "truncated file"}],
              "duplicates": [], "imbalance_ratio": 1.0}
    report = write_report(
        output, **data, metrics=metrics, history=history,
        summary={"model": "lenet5", "data": "photos", "split": "test",
                 "training_seconds": 75.0},
        split_counts={"train": {"cat": 40, "dog": 30, "bird": 20},
                      "test": {"cat": 4, "dog": 4, "bird": 4}},
        doctor=doctor,
    )
    return report, data


@pytest.fixture(scope="module")
def random_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, np.ndarray]:
    """300 predictions of 7 classes, metrics.json written and read back as training does."""
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(7)]
    labels = rng.integers(0, 7, 300)
    probabilities = rng.random((300, 7))
    probabilities[np.arange(300), labels] += rng.random(300) * 1.5
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    output = tmp_path_factory.mktemp("random")
    (output / "metrics.json").write_text(json.dumps(compute_metrics(labels, probabilities, names)))
    metrics = json.loads((output / "metrics.json").read_text())
    report = write_report(
        output, probabilities=probabilities, labels=labels, class_names=names,
        item_ids=[f"item{i}" for i in range(300)],
        images=torch.randint(0, 256, (300, 3, 40, 40), dtype=torch.uint8), metrics=metrics,
    )
    return report, metrics, np.column_stack([labels, probabilities.argmax(axis=1)])


@pytest.mark.slow
def test_summary_numbers_equal_metrics_json_and_sklearn(random_report) -> None:
    report, metrics, (true_and_predicted) = random_report
    true, predicted = true_and_predicted.T
    shown = {attributes["data-metric"]: attributes["data-value"]
             for _, attributes in _elements(report.read_text()) if "data-metric" in attributes}
    for key in ("accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro",
                "precision_weighted", "recall_weighted", "f1_weighted"):
        assert float(shown[key]) == metrics[key], key  # exactly: the page carries repr
    assert int(shown["num_samples"]) == metrics["num_samples"] == 300
    sklearn = classification_report(true, predicted, output_dict=True, zero_division=0,
                                    labels=range(7))
    assert float(shown["accuracy"]) == pytest.approx(sklearn["accuracy"])
    assert float(shown["f1_macro"]) == pytest.approx(sklearn["macro avg"]["f1-score"])
    assert float(shown["precision_weighted"]) == pytest.approx(
        sklearn["weighted avg"]["precision"])
    assert 0 <= float(shown["ece"]) <= 1


@pytest.mark.slow
def test_per_class_cells_equal_metrics_json_and_sklearn(random_report) -> None:
    report, metrics, true_and_predicted = random_report
    true, predicted = true_and_predicted.T
    cells = {(attributes["row-class"], attributes["data-column"]): attributes["data-value"]
             for tag, attributes in _elements(report.read_text())
             if tag == "td" and "data-column" in attributes}
    sklearn = classification_report(true, predicted, output_dict=True, zero_division=0,
                                    labels=range(7), target_names=metrics["class_names"])
    assert len(cells) == 7 * 4
    assert len(metrics["per_class"]) == 7  # the loop below checks every cell
    for name, row in metrics["per_class"].items():
        for column in ("precision", "recall", "f1"):
            assert float(cells[name, column]) == row[column]
            assert row[column] == pytest.approx(sklearn[name][column.replace("f1", "f1-score")])
        assert int(cells[name, "support"]) == row["support"] == sklearn[name]["support"]


@pytest.mark.slow
def test_mistakes_grid_shows_the_mistakes_most_confident_first(known_report) -> None:
    report, data = known_report
    figures = [attributes for tag, attributes in _elements(report.read_text())
               if tag == "figure" and "mistake" in attributes.get("class", "")]
    assert [int(figure["data-index"]) for figure in figures] == EXPECTED_ORDER
    for figure in figures:
        true, predicted, row = MISTAKES[int(figure["data-index"])]
        assert figure["data-true"] == NAMES[true] != figure["data-predicted"] == NAMES[predicted]
        assert float(figure["data-probability"]) == max(row)
    thumbnails = _mistake_thumbnails(report.read_text())
    for index, thumbnail in zip(EXPECTED_ORDER, thumbnails, strict=True):
        assert np.array_equal(np.asarray(thumbnail), data["images"][index, 0].numpy())


def _mistake_thumbnails(html: str) -> list[Image.Image]:
    """The images of the mistakes grid, in page order."""
    elements = _elements(html)
    pictures, inside = [], False
    for tag, attributes in elements:
        if tag == "figure":
            inside = "mistake" in attributes.get("class", "")
        if tag == "img" and inside:
            encoded = attributes["src"].removeprefix("data:image/png;base64,")
            pictures.append(Image.open(io.BytesIO(base64.b64decode(encoded))))
    return pictures


@pytest.mark.slow
def test_mistakes_csv_lists_every_mistake_most_confident_first(known_report) -> None:
    report, data = known_report
    rows = list(csv.DictReader((report.parent / "mistakes.csv").open()))
    assert [row["item"] for row in rows] == [data["item_ids"][i] for i in EXPECTED_ORDER]
    for row, index in zip(rows, EXPECTED_ORDER, strict=True):
        true, predicted, probabilities = MISTAKES[index]
        assert (row["true"], row["predicted"]) == (NAMES[true], NAMES[predicted])
        assert float(row["probability"]) == pytest.approx(max(probabilities), abs=1e-6)
        assert float(row["loss"]) == pytest.approx(-math.log(probabilities[true]), abs=1e-6)


@pytest.mark.slow
def test_confused_pairs_most_mistakes_first(known_report) -> None:
    report, _ = known_report
    pairs = [attributes for _, attributes in _elements(report.read_text())
             if "pair" in attributes.get("class", "").split()]
    listed = [(pair["data-true"], pair["data-predicted"], int(pair["data-count"]))
              for pair in pairs]
    assert listed == [("cat", "dog", 2), ("dog", "bird", 1), ("bird", "dog", 1)]


@pytest.mark.slow
def test_charts_are_pngs_and_the_page_is_self_contained(known_report) -> None:
    report, _ = known_report
    for key, name in CHART_FILES.items():
        if key == "reliability_uncalibrated":  # only for a calibrated model's report
            continue
        with Image.open(report.parent / name) as picture:
            assert picture.format == "PNG" and min(picture.size) > 50, name
    html = report.read_text()
    elements = _elements(html)
    sources = [attributes["src"] for tag, attributes in elements if tag == "img"]
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    assert "http://" not in html and "https://" not in html
    ids = {attributes.get("id") for _, attributes in elements}
    assert set(SECTIONS) <= ids


@pytest.mark.slow
def test_text_from_file_names_is_escaped(known_report) -> None:
    html = known_report[0].read_text()
    assert "<&>.png" not in html and "&lt;&amp;&gt;.png" in html


@pytest.mark.slow
def test_run_facts_data_set_and_doctor_are_shown(known_report) -> None:
    html = known_report[0].read_text()
    assert 'data-fact="training_seconds">1 min 15 s<' in html
    assert 'data-fact="model">lenet5<' in html
    assert "<td>cat</td><td>40</td><td>4</td>" in html.replace("\n", "").replace(" ", "")
    assert "cat/broken.jpg" in html and "truncated file" in html


@pytest.mark.slow
def test_without_history_or_mistakes(tmp_path: Path) -> None:
    """A model file evaluated alone, and a perfect one: no curves, no grid, a note each."""
    labels = np.array([0, 1, 1])
    probabilities = np.eye(2)[labels] * 0.8 + 0.1
    report = write_report(
        tmp_path, probabilities=probabilities, labels=labels, class_names=["a", "b"],
        item_ids=["x", "y", "z"], images=torch.zeros(3, 3, 4, 4, dtype=torch.uint8),
        metrics=compute_metrics(labels, probabilities, ["a", "b"]), file_prefix="eval-",
        report_name="eval.html",
    )
    assert report == tmp_path / "eval.html"
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "eval-confusion.png", "eval-confusion_normalized.png", "eval-mistakes.csv",
        "eval-reliability.png", "eval.html"]
    html = report.read_text()
    assert "No training history" in html and "No mistakes" in html
    assert (tmp_path / "eval-mistakes.csv").read_text().strip() == \
        "item,true,predicted,probability,loss"


def test_inputs_of_different_lengths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="item_ids"):
        write_report(tmp_path, probabilities=np.ones((2, 2)) / 2, labels=np.zeros(2, int),
                     class_names=["a", "b"], item_ids=["only one"],
                     images=torch.zeros(2, 1, 4, 4, dtype=torch.uint8), metrics={})


def test_history_and_split_count_helpers(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text('{"epoch": 1, "lr": 0.1}\n{"epoch": 2, "lr": 0.05}\n')
    assert load_history(history) == [{"epoch": 1, "lr": 0.1}, {"epoch": 2, "lr": 0.05}]
    assert load_history(tmp_path / "absent.jsonl") is None
    counts = count_per_split(torch.tensor([0, 1, 1, 2]), ["a", "b", "c"],
                             {"train": [0, 1, 3], "test": np.array([2])})
    assert counts == {"train": {"a": 1, "b": 1, "c": 1}, "test": {"a": 0, "b": 1, "c": 0}}


@pytest.mark.slow
def test_eval_writes_its_own_report_beside_the_run(digits_run: Path) -> None:
    from imgcls.cli import main

    assert main(["eval", str(digits_run), "--data", "digits"]) == 0
    report = (digits_run / "eval-test.html").read_text()
    assert 'id="confusion"' in report and 'id="calibration"' in report
    assert (digits_run / "eval-test-mistakes.csv").is_file()
    assert (digits_run / "mistakes.csv").is_file()  # the run's own, not overwritten
    assert (digits_run / "report.html").is_file()


def test_a_calibrated_report_shows_both_diagrams(tmp_path: Path) -> None:
    """With the predictions before the temperature, the calibration section shows the ECE
    and the reliability diagram of both: scikit-learn-free numbers from calibration.py."""
    from imgcls.evaluation.calibration import expected_calibration_error

    data = _known_set()
    sharp = data["probabilities"] ** 3
    sharp /= sharp.sum(axis=1, keepdims=True)
    metrics = compute_metrics(data["labels"], data["probabilities"], NAMES)
    metrics["trust"] = {"temperature": 1.7}
    report = write_report(tmp_path, **data, metrics=metrics, uncalibrated=sharp)
    html = report.read_text()
    before = expected_calibration_error(sharp, data["labels"])
    assert f'data-metric="ece_uncalibrated" data-value="{before}"' in html
    assert "reliability diagram before calibration" in html and "1.700" in html
    with Image.open(tmp_path / CHART_FILES["reliability_uncalibrated"]) as picture:
        assert picture.format == "PNG"
