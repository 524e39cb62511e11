"""Fitting a model's trust record on data it never trained on (the validation split):
temperature scaling (Guo et al. 2017) and the "none of my classes" threshold.

Temperature: the one T > 0 that minimises the negative log-likelihood of softmax(logits / T).
It is a one-parameter convex problem on logits we already hold, solved by scipy's bounded
scalar minimiser over log T (as scikit-learn's own `CalibratedClassifierCV(method=
"temperature")` does over log 1/T); that class wants a fitted estimator to wrap, which a
network's logits are not. Dividing logits by T never changes the argmax: accuracy is kept.

Familiarity: the log-sum-exp of the logits as trained (not the calibrated ones) over an
energy temperature of 2: Liu et al.'s 2020 energy score, negated. Chosen by measurement
(bench/trust.py; Fashion-MNIST, `--time-budget 10m` vgg_small, MNIST digits as outliers,
threshold keeping 95% of the validation images): AUROC 0.989 and 95% of the digits turned
away, against 0.929 / 44% for the maximum softmax probability, 0.983 / 90% for the energy at
temperature 1, 0.978 / 86% for the energy of the calibrated logits, 0.972 / 80% for the max
logit, 0.949 / 69% for Mahalanobis distance on penultimate features and 0.697 / 5% for their
k-nearest-neighbour distance. It needs only the logits, so every backend and the exported
ONNX graph compute it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp

from imgcls.evaluation.calibration import expected_calibration_error
from imgcls.modelfile.card import TrustRecord

DEFAULT_KEEP = 0.95  # the share of in-distribution images the threshold keeps
SCORE = "energy"
# Measured (bench/trust.py, two vgg_small Fashion-MNIST models, MNIST digits as outliers): at 2
# the energy turned away 95% / 90% of the digits at 95% kept, at 1 (Liu et al.'s) 93% / 85%,
# on the calibrated logits 89% / 79%; label smoothing leaves logits that a softer energy reads
# better.
ENERGY_TEMPERATURE = 2.0
_LOG_T_BOUNDS = (-4.0, 4.0)  # T from 0.02 to 55: far past any network's miscalibration


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-scaled[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the NLL of softmax(logits / T) on (logits, labels); 1 for no data."""
    if len(labels) == 0:
        return 1.0
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


def familiarity(logits: np.ndarray, energy_temperature: float = ENERGY_TEMPERATURE) -> np.ndarray:
    """Per image, how much it looks like the training classes: logsumexp of the logits as
    trained (not the calibrated ones) over the energy temperature."""
    return logsumexp(np.asarray(logits, np.float64) / energy_temperature, axis=1)


def keep_threshold(scores: np.ndarray, keep: float) -> float:
    """The familiarity that keeps at least `keep` of images like `scores`, with 95%
    confidence: the (1 - keep) quantile lowered by a one-sided binomial margin, so that the
    share kept on new images of the same kind is not below `keep` by chance (6,000
    validation images: the 4.54% quantile for keep 0.95)."""
    margin = 1.645 * np.sqrt(keep * (1 - keep) / len(scores))
    return float(np.quantile(scores, max(0.0, 1.0 - keep - margin)))


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softmax(logits / T), float32."""
    return np.exp(log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)).astype(
        np.float32)


def fit_trust(logits: np.ndarray, labels: np.ndarray, *, keep: float = DEFAULT_KEEP,
              split: str = "val") -> TrustRecord:
    """The trust record of a network whose `split` logits and labels are given."""
    labels = np.asarray(labels)
    temperature = fit_temperature(logits, labels)
    threshold = keep_threshold(familiarity(logits), keep) if len(labels) else None
    record = TrustRecord(temperature=temperature, score=SCORE, threshold=threshold, keep=keep,
                         energy_temperature=ENERGY_TEMPERATURE)
    measured = trust_metrics(logits, labels, record)
    fitted = {"split": split, "images": len(labels),
              **{key: measured[key] for key in ("ece_before", "ece_after", "nll_before",
                                               "nll_after")}}
    return replace(record, fitted=fitted)


def trust_metrics(logits: np.ndarray, labels: np.ndarray, trust: TrustRecord) -> dict[str, Any]:
    """How a trust record does on a split's (uncalibrated) logits: calibration before and
    after, and the share of the split's images it would answer `unknown`."""
    labels = np.asarray(labels)
    scores = familiarity(logits, trust.energy_temperature)
    return {
        "temperature": trust.temperature,
        "ece_before": expected_calibration_error(calibrated(logits, 1.0), labels),
        "ece_after": expected_calibration_error(calibrated(logits, trust.temperature), labels),
        "nll_before": negative_log_likelihood(logits, labels, 1.0) if len(labels) else None,
        "nll_after": (negative_log_likelihood(logits, labels, trust.temperature)
                      if len(labels) else None),
        "threshold": trust.threshold,
        "unknown_rate": (float(np.mean(scores < trust.threshold))
                         if trust.threshold is not None and len(scores) else 0.0),
    }


def without_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities a calibrated model gave before its temperature: softmax(T log p).
    log p is the calibrated logits up to a shift, which softmax ignores; a probability that
    underflowed to 0 stays at the smallest float's share."""
    floor = np.finfo(np.float32).tiny
    log_p = np.log(np.maximum(np.asarray(probabilities, np.float64), floor))
    return calibrated(log_p * temperature, 1.0)


def answered_trust(probabilities: np.ndarray, uncalibrated: np.ndarray,
                   familiarity: np.ndarray, labels: np.ndarray,
                   trust: TrustRecord) -> dict[str, Any]:
    """`imgcls eval`'s trust section: calibration before and after on the evaluated images,
    and the share the model file's threshold answers `unknown`."""
    return {
        "temperature": trust.temperature,
        "ece_before": expected_calibration_error(uncalibrated, labels),
        "ece_after": expected_calibration_error(probabilities, labels),
        "threshold": trust.threshold,
        "unknown_rate": (float(np.mean(familiarity < trust.threshold))
                         if trust.threshold is not None and len(familiarity) else 0.0),
    }
