"""Calibration: whether a model's confidence (its top probability) matches how often it is right.

Expected calibration error as Guo et al. (2017) define it: the top probabilities are put in
`bins` equal-width bins over [0, 1], bin m holding confidences in ((m-1)/M, m/M] (a
confidence of exactly 0 goes to the first bin), and

    ECE = sum over bins of |accuracy(bin) - mean confidence(bin)| * count(bin) / N
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_BINS = 15  # the usual choice since Guo et al.; torchmetrics' default too


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram; an empty bin has NaN confidence/accuracy."""

    edges: np.ndarray  # [bins + 1], 0 to 1
    confidence: np.ndarray  # [bins] mean top probability of the bin's predictions
    accuracy: np.ndarray  # [bins] fraction of the bin's predictions that are right
    count: np.ndarray  # [bins] predictions in the bin

    @property
    def total(self) -> int:
        return int(self.count.sum())


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS
) -> ReliabilityBins:
    """Top-probability confidence, accuracy and count per equal-width bin."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # side="left" counts the inner edges strictly below a confidence: right-closed bins.
    which = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(which, weights=correct, minlength=bins) / count
    return ReliabilityBins(edges, mean_confidence, accuracy, count)


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS
) -> float:
    """ECE in [0, 1]; 0 for an empty set of predictions."""
    table = reliability_bins(probabilities, labels, bins)
    if table.total == 0:
        return 0.0
    filled = table.count > 0
    gaps = np.abs(table.accuracy[filled] - table.confidence[filled])
    return float(np.sum(gaps * table.count[filled]) / table.total)
