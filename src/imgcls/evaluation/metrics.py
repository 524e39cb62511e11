"""Classification metrics (scikit-learn): the `test` section of a run's metrics.json (see
docs/architecture.md, "Run directory")."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)


def compute_metrics(
    true_labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Metrics of predictions `probabilities` [N, K] against `true_labels` [N]."""
    true_labels = np.asarray(true_labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    every_class = np.arange(len(class_names))
    metrics: dict[str, Any] = {"accuracy": float(accuracy_score(true_labels, predicted))}
    if len(class_names) > 5:
        metrics["top5_accuracy"] = float(
            top_k_accuracy_score(true_labels, probabilities, k=5, labels=every_class)
        )
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            true_labels, predicted, labels=every_class, average=average, zero_division=0
        )
        metrics[f"precision_{average}"] = float(precision)
        metrics[f"recall_{average}"] = float(recall)
        metrics[f"f1_{average}"] = float(f1)
    metrics["num_samples"] = int(len(true_labels))
    metrics["class_names"] = list(class_names)
    metrics["per_class"] = _per_class(true_labels, predicted, class_names)
    metrics["confusion_matrix"] = confusion_matrix(
        true_labels, predicted, labels=every_class
    ).tolist()
    return metrics


def _per_class(
    true_labels: np.ndarray, predicted: np.ndarray, class_names: list[str]
) -> dict[str, dict[str, float]]:
    precision, recall, f1, support = precision_recall_fscore_support(
        true_labels, predicted, labels=np.arange(len(class_names)), zero_division=0
    )
    return {
        name: {
            "precision": float(precision[index]),
            "recall": float(recall[index]),
            "f1": float(f1[index]),
            "support": int(support[index]),
        }
        for index, name in enumerate(class_names)
    }
