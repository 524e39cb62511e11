"""Temperature scaling and the `unknown` threshold (evaluation/trust.py), against plain
references: a torch LBFGS fit of the same NLL, numpy quantiles, scikit-learn's ECE-free
log_loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss

from imgcls.evaluation.calibration import expected_calibration_error
from imgcls.evaluation.trust import (
    calibrated,
    familiarity,
    fit_temperature,
    fit_trust,
    negative_log_likelihood,
    trust_metrics,
)


def overconfident(scale: float, count: int = 4000, classes: int = 10,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(true logits); the network's logits are `scale` times those:
    exactly miscalibrated by a temperature of `scale`."""
    rng = np.random.default_rng(seed)
    true = rng.normal(0, 2.0, (count, classes))
    probabilities = np.exp(true) / np.exp(true).sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=row) for row in probabilities])
    return true * scale, labels


def torch_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The reference: LBFGS on log T with torch's cross entropy."""
    log_t = torch.zeros(1, requires_grad=True, dtype=torch.float64)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")
    x, y = torch.from_numpy(logits), torch.from_numpy(labels)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_temperature_matches_a_torch_lbfgs_fit(scale: float) -> None:
    logits, labels = overconfident(scale)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(torch_temperature(logits, labels), rel=1e-3)
    assert fitted == pytest.approx(scale, rel=0.1)  # it undoes the planted miscalibration


def test_nll_is_scikit_learns_log_loss() -> None:
    logits, labels = overconfident(2.0, count=500)
    for temperature in (0.7, 1.0, 2.0):
        probabilities = calibrated(logits, temperature).astype(np.float64)
        probabilities /= probabilities.sum(1, keepdims=True)  # float32 rounding
        expected = log_loss(labels, probabilities, labels=list(range(10)))
        assert negative_log_likelihood(logits, labels, temperature) == pytest.approx(
            expected, rel=1e-4)


def test_calibration_lowers_ece_and_keeps_every_answer() -> None:
    logits, labels = overconfident(3.0)
    trust = fit_trust(logits, labels)
    before = expected_calibration_error(calibrated(logits, 1.0), labels)
    after = expected_calibration_error(calibrated(logits, trust.temperature), labels)
    assert after < before / 3
    assert trust.fitted["ece_before"] == pytest.approx(before)
    assert trust.fitted["ece_after"] == pytest.approx(after)
    np.testing.assert_array_equal(calibrated(logits, trust.temperature).argmax(1),
                                  logits.argmax(1))


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.95, 0.99])
def test_the_threshold_keeps_the_stated_share(keep: float) -> None:
    logits, labels = overconfident(2.0)
    trust = fit_trust(logits, labels, keep=keep)
    kept = np.mean(familiarity(logits) >= trust.threshold)
    margin = 1.645 * np.sqrt(keep * (1 - keep) / len(labels))  # the 95% one-sided bound
    assert keep <= kept <= keep + margin + 1e-3
    assert trust_metrics(logits, labels, trust)["unknown_rate"] == pytest.approx(1 - kept)


def test_the_margin_holds_on_new_images_of_the_same_kind() -> None:
    """Fitted on 20 different sets of 2,000 images, the threshold keeps at least 95% of a large
    fresh population of the same kind in (nearly) every fit; a bare quantile would fall short
    about half the time."""
    population = familiarity(overconfident(2.0, count=40_000, seed=100)[0])
    kept = []
    for seed in range(20):
        logits, labels = overconfident(2.0, count=2000, seed=seed)
        kept.append(np.mean(population >= fit_trust(logits, labels, keep=0.95).threshold))
    assert np.mean(np.array(kept) >= 0.95) >= 0.8


def test_familiarity_is_torch_logsumexp_of_the_logits() -> None:
    logits, _ = overconfident(2.0, count=50)
    expected = torch.logsumexp(torch.from_numpy(logits) / 2, dim=1).numpy()
    np.testing.assert_allclose(familiarity(logits), expected, rtol=1e-12)  # at temperature 2


def test_no_validation_images_leaves_the_model_as_it_is() -> None:
    assert fit_temperature(np.empty((0, 3)), np.empty(0, dtype=int)) == 1.0
