"""metrics.json's numbers against scikit-learn's own report, on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import classification_report

from imgcls.evaluation.metrics import compute_metrics


def test_metrics_match_classification_report() -> None:
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(7)]
    true = rng.integers(0, 7, 300)
    probabilities = rng.random((300, 7))
    probabilities[np.arange(300), true] += rng.random(300) * 1.5  # right more often than not
    metrics = compute_metrics(true, probabilities, names)
    predicted = probabilities.argmax(axis=1)
    report = classification_report(true, predicted, target_names=names, output_dict=True,
                                   zero_division=0, labels=range(7))
    assert metrics["accuracy"] == pytest.approx(report["accuracy"])
    assert metrics["f1_macro"] == pytest.approx(report["macro avg"]["f1-score"])
    assert metrics["recall_weighted"] == pytest.approx(report["weighted avg"]["recall"])
    assert metrics["per_class"]["c3"]["precision"] == pytest.approx(report["c3"]["precision"])
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    assert metrics["top5_accuracy"] == pytest.approx(np.mean([t in row for t, row in
                                                              zip(true, top5, strict=True)]))
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix[2, 4] == np.sum((true == 2) & (predicted == 4))


def test_class_never_seen_counts_as_zero() -> None:
    metrics = compute_metrics(np.array([0, 0, 1]), np.array([[0.9, 0.1, 0], [0.8, 0.2, 0],
                                                             [0.1, 0.9, 0]]), ["a", "b", "c"])
    assert metrics["per_class"]["c"]["support"] == 0
    assert "top5_accuracy" not in metrics  # only with more than 5 classes
    assert metrics["accuracy"] == 1.0
