"""Expected calibration error against answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from imgcls.evaluation.calibration import expected_calibration_error, reliability_bins


def _predictions(confidences: list[float], correct: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Three-class probabilities whose top class is 0 with the given confidence; the label
    is 0 where the prediction is right, 1 where it is wrong."""
    top = np.array(confidences)
    rest = (1 - top) / 2
    probabilities = np.stack([top, rest, rest], axis=1)
    labels = np.where(correct, 0, 1)
    return probabilities, labels


def test_ece_of_a_hand_made_example() -> None:
    # 15 bins of width 1/15. Three bins are filled:
    #   (14/15, 1]    0.94 0.95 0.95 0.96: mean confidence 0.95, 3 of 4 right (0.75)
    #                 |0.75 - 0.95| * 4/10 = 0.08
    #   (10/15, 11/15] 0.68 0.70 0.72: mean 0.70, 1 of 3 right
    #                 |1/3 - 0.70| * 3/10 = 0.11
    #   (8/15, 9/15]  0.54 0.55 0.56: mean 0.55, 2 of 3 right
    #                 |2/3 - 0.55| * 3/10 = 0.035
    # ECE = 0.08 + 0.11 + 0.035 = 0.225
    probabilities, labels = _predictions(
        [0.94, 0.95, 0.95, 0.96, 0.68, 0.70, 0.72, 0.54, 0.55, 0.56],
        [True, True, True, False, True, False, False, True, True, False],
    )
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.225)

    table = reliability_bins(probabilities, labels)
    filled = np.flatnonzero(table.count)
    assert filled.tolist() == [8, 10, 14]
    assert table.count[filled].tolist() == [3, 3, 4]
    assert table.confidence[filled] == pytest.approx([0.55, 0.70, 0.95])
    assert table.accuracy[filled] == pytest.approx([2 / 3, 1 / 3, 0.75])
    assert np.isnan(table.confidence[0]) and np.isnan(table.accuracy[0])  # empty bins


def test_perfectly_calibrated_is_zero() -> None:
    # 0.75 confident and right 3 times in 4; always right when fully confident.
    probabilities, labels = _predictions([0.75] * 4 + [1.0] * 3, [True, True, True, False]
                                         + [True] * 3)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0, abs=1e-12)


def test_confident_and_always_wrong_is_about_one() -> None:
    probabilities, labels = _predictions([0.999] * 20, [False] * 20)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.999)


def test_bins_are_closed_on_the_right() -> None:
    # With 3 bins, a confidence of exactly 2/3 belongs to (1/3, 2/3], 1.0 to the last bin.
    probabilities, labels = _predictions([2 / 3, 1.0], [True, True])
    table = reliability_bins(probabilities, labels, bins=3)
    assert table.count.tolist() == [0, 1, 1]


def test_empty_set_and_bad_bins() -> None:
    assert expected_calibration_error(np.empty((0, 3)), np.empty(0, dtype=int)) == 0.0
    with pytest.raises(ValueError, match="bins"):
        reliability_bins(np.ones((1, 1)), np.zeros(1, dtype=int), bins=0)
