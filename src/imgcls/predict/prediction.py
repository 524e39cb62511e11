"""One input's answer, and class probabilities ranked into it: torch-free, so an .onnx
Predictor, `imgcls predict` and the service answer in one format without importing torch.

"None of my classes": an image whose familiarity (logsumexp of the calibrated logits) falls
below the threshold answers `label: "unknown"` with `unknown: true`, its familiarity and the
threshold; its top-k classes stay listed. The threshold is the model card's (fitted on the
validation split) unless the caller's `reject_below` overrides it; a model file without a
trust record never answers unknown, and answers exactly as before."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgcls.modelfile.card import TrustRecord

UNKNOWN = "unknown"
# reject_below's values: a number, "card" (the model card's threshold) or "off" (never).
CARD, OFF = "card", "off"


@dataclass
class Prediction:
    input: str
    label: str | None
    score: float | None
    topk: list[dict[str, Any]]
    error: str | None = None  # why this input could not be classified
    familiarity: float | None = None  # None: the model has no trust record
    threshold: float | None = None  # the familiarity below which the answer is unknown
    unknown: bool = False  # none of the model's classes

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"input": self.input, "label": self.label,
                                    "score": self.score, "topk": self.topk}
        if self.familiarity is not None:
            document.update(unknown=self.unknown, familiarity=self.familiarity,
                            threshold=self.threshold)
        if self.error:
            document["error"] = self.error
        return document


def parse_reject_below(value: str | float | None) -> float | str:
    """--reject-below / a request's reject_below: a familiarity, "card" or "off"."""
    if value is None or value == CARD:
        return CARD
    if value == OFF:
        return OFF
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"reject_below must be a number, {CARD!r} or {OFF!r}; "
                         f"got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"reject_below must be a finite number; got {value!r}")
    return number


def rejection_threshold(trust: TrustRecord | None, reject_below: float | str) -> float | None:
    """The familiarity under which an answer is unknown; None: never unknown."""
    if reject_below == OFF:
        return None
    if reject_below == CARD:
        return None if trust is None else trust.threshold
    return float(reject_below)


def answer(name: str, probabilities: np.ndarray, familiarity: float | None,
           class_names: list[str], topk: int, *, trust: TrustRecord | None,
           threshold: float | None) -> Prediction:
    """One image's Prediction from its probability row [K] and familiarity."""
    top = ranked(probabilities, class_names, topk)
    if trust is None and threshold is None or familiarity is None or math.isnan(familiarity):
        return Prediction(name, top[0]["label"], top[0]["score"], top)
    unknown = threshold is not None and familiarity < threshold
    return Prediction(name, UNKNOWN if unknown else top[0]["label"], top[0]["score"], top,
                      familiarity=float(familiarity), threshold=threshold, unknown=unknown)


def ranked(probabilities: np.ndarray, class_names: list[str], topk: int) -> list[dict[str, Any]]:
    """The `topk` most probable classes of one row [K], best first, as {label, score}."""
    count = min(topk, len(class_names))
    # A stable sort of the negated row: ties keep the lower class index first, as torch.topk.
    order = np.argsort(-probabilities, kind="stable")[:count]
    return [{"label": class_names[index], "score": float(probabilities[index])}
            for index in order.tolist()]
