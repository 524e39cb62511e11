"""Error analysis: which items the model gets wrong (most confident first) and which classes
it mixes up most (fastai's `plot_top_losses` and `most_confused`, as data)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from imgcls.utils.csv_safe import safe_row

# Floor on p(true) before the log: a probability of exactly 0 would give an infinite loss.
_MIN_PROBABILITY = 1e-12


@dataclass(frozen=True)
class Mistake:
    index: int  # position in the evaluated set
    item: str  # the item id (a path for files)
    true: str
    predicted: str
    probability: float  # of the predicted class
    loss: float  # cross-entropy of the true class: -log p(true)


@dataclass(frozen=True)
class ConfusedPair:
    true: str
    predicted: str
    count: int  # items of `true` predicted as `predicted`
    examples: list[int]  # their indices, most confident mistake first


def rank_mistakes(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Indices of the misclassified items, most confident (highest top probability) first;
    ties broken by the higher loss, then by position, so the order is reproducible."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    top = probabilities[wrong, predicted[wrong]]
    loss = _true_class_loss(probabilities[wrong], labels[wrong])
    # lexsort sorts by the last key first; negate to sort descending.
    return wrong[np.lexsort((wrong, -loss, -top))]


def list_mistakes(
    probabilities: np.ndarray, labels: np.ndarray, class_names: list[str], item_ids: list[str]
) -> list[Mistake]:
    """Every misclassified item, most confident first."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    order = rank_mistakes(probabilities, labels)
    predicted = probabilities.argmax(axis=1)
    loss = _true_class_loss(probabilities[order], labels[order])
    return [
        Mistake(
            index=int(index),
            item=item_ids[index],
            true=class_names[labels[index]],
            predicted=class_names[predicted[index]],
            probability=float(probabilities[index, predicted[index]]),
            loss=float(item_loss),
        )
        for index, item_loss in zip(order, loss, strict=True)
    ]


def confused_pairs(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    *,
    top: int = 5,
    examples: int = 6,
) -> list[ConfusedPair]:
    """The `top` (true, predicted) pairs with the most mistakes, most first, each with up to
    `examples` of its items. Pairs are ordered: cat-as-dog and dog-as-cat are two pairs."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    predicted = probabilities.argmax(axis=1)
    ranked = rank_mistakes(probabilities, labels)
    by_pair: dict[tuple[int, int], list[int]] = {}
    for index in ranked:  # in confidence order, so each pair's list is too
        by_pair.setdefault((int(labels[index]), int(predicted[index])), []).append(int(index))
    # Most mistakes first; ties by class order so the listing is stable.
    pairs = sorted(by_pair.items(), key=lambda entry: (-len(entry[1]), entry[0]))
    return [
        ConfusedPair(class_names[true], class_names[guess], len(indices), indices[:examples])
        for (true, guess), indices in pairs[:top]
    ]


def mistakes_csv(mistakes: list[Mistake]) -> str:
    """mistakes.csv's text: item, true, predicted, probability, loss; one row per mistake."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["item", "true", "predicted", "probability", "loss"])
    for mistake in mistakes:
        writer.writerow(safe_row([mistake.item, mistake.true, mistake.predicted,
                                  f"{mistake.probability:.6f}", f"{mistake.loss:.6f}"]))
    return buffer.getvalue()


def _true_class_loss(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    true_probability = probabilities[np.arange(len(labels)), labels]
    return -np.log(np.maximum(true_probability, _MIN_PROBABILITY))
