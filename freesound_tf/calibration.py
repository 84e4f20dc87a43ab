"""Temperature scaling of a member's scores (seed 003 calibrates its geometric-mean predictions).

One temperature ``T`` for all classes, fit on the out-of-fold scores: softmax (single-label) scores ``p``
become ``softmax(log p / T)``, fit by the negative log-likelihood; sigmoid (multi-label) scores become
``sigmoid(logit(p) / T)``, fit by the binary cross-entropy. ``T > 1`` softens over-confident scores.
Both maps are increasing per clip, so class rankings (lwlrap, MAP@3) stay as they were.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax

EPS = 1e-7  # scores are clipped here before the log (a float32 sigmoid reaches 0 and 1)
LOG_T_BOUNDS = (np.log(1e-2), np.log(1e2))


def score_logits(scores: np.ndarray, multilabel: bool) -> np.ndarray:
    """Logits that give back ``scores``: logit(p) for sigmoid scores, log(p) for softmax ones."""
    p = np.clip(np.asarray(scores, np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p) if multilabel else np.log(p)


def apply_temperature(scores: np.ndarray, temperature: float, multilabel: bool) -> np.ndarray:
    """Scores recomputed from their logits divided by ``temperature`` (float32, same shape)."""
    z = score_logits(scores, multilabel) / temperature
    out = expit(z) if multilabel else np.exp(log_softmax(z, axis=-1))
    return out.astype(np.float32)


def calibration_loss(scores: np.ndarray, labels: np.ndarray, multilabel: bool, temperature: float = 1.0) -> float:
    """Mean NLL per clip (softmax) or mean BCE per clip and class (sigmoid) of the tempered scores."""
    z = score_logits(scores, multilabel) / temperature
    y = np.asarray(labels, np.float64)
    if multilabel:
        return float(np.mean(np.logaddexp(0.0, z) - y * z))
    return float(-np.mean(np.sum(y * log_softmax(z, axis=-1), axis=-1)))


def fit_temperature(scores: np.ndarray, labels: np.ndarray, multilabel: bool) -> float:
    """The temperature minimising :func:`calibration_loss` (searched over log T in [1e-2, 1e2])."""
    if len(scores) == 0:
        raise ValueError("fit_temperature: no scores to fit on (no out-of-fold clips)")
    result = minimize_scalar(lambda log_t: calibration_loss(scores, labels, multilabel, float(np.exp(log_t))),
                             bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def calibrate(scores: np.ndarray, labels: np.ndarray, multilabel: bool) -> dict[str, float]:
    """Fit on OOF scores: ``{"temperature", "oof_loss_raw", "oof_loss_calibrated"}`` for metrics.json.

    The calibrated loss is in-sample (T was fit on these clips); one parameter barely overfits.
    """
    temperature = fit_temperature(scores, labels, multilabel)
    return {"temperature": temperature, "oof_loss_raw": calibration_loss(scores, labels, multilabel),
            "oof_loss_calibrated": calibration_loss(scores, labels, multilabel, temperature)}
