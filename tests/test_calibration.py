"""Temperature scaling: recovers a known temperature from sampled labels, keeps rankings, lowers the loss."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, softmax

from freesound_tf.calibration import apply_temperature, calibrate, calibration_loss, fit_temperature
from freesound_tf.metrics import lwlrap, map_at_k


def _softmax_task(temperature: float, n: int = 20000, classes: int = 5, seed: int = 0):
    """Scores softmax(z); labels drawn from softmax(z / temperature), so the best fit is ``temperature``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, (n, classes))
    truth = softmax(z / temperature, axis=1)
    drawn = (rng.random((n, 1)) > np.cumsum(truth, axis=1)).sum(axis=1)
    return softmax(z, axis=1).astype(np.float32), np.eye(classes, dtype=np.float32)[drawn]


def _sigmoid_task(temperature: float, n: int = 4000, classes: int = 6, seed: int = 1):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, (n, classes))
    labels = (rng.random((n, classes)) < expit(z / temperature)).astype(np.float32)
    return expit(z).astype(np.float32), labels


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_recovers_a_known_softmax_temperature(temperature: float) -> None:
    scores, labels = _softmax_task(temperature)
    assert fit_temperature(scores, labels, multilabel=False) == pytest.approx(temperature, rel=0.06)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_recovers_a_known_sigmoid_temperature(temperature: float) -> None:
    scores, labels = _sigmoid_task(temperature)
    assert fit_temperature(scores, labels, multilabel=True) == pytest.approx(temperature, rel=0.06)


def test_apply_temperature_formulas_and_identity() -> None:
    scores, _ = _softmax_task(1.0, n=50)
    np.testing.assert_allclose(apply_temperature(scores, 1.0, multilabel=False), scores, rtol=1e-5, atol=1e-7)
    expected = scores.astype(np.float64) ** 0.5
    np.testing.assert_allclose(apply_temperature(scores, 2.0, False), expected / expected.sum(1, keepdims=True),
                               rtol=1e-5)
    p = np.array([[0.2, 0.9]], np.float32)
    logit = np.log(p / (1 - p))
    np.testing.assert_allclose(apply_temperature(p, 3.0, multilabel=True), 1 / (1 + np.exp(-logit / 3)), rtol=1e-5)


@pytest.mark.parametrize("multilabel", [False, True])
def test_calibration_keeps_rankings_and_lowers_the_loss(multilabel: bool) -> None:
    scores, labels = _sigmoid_task(3.0) if multilabel else _softmax_task(3.0, n=3000)
    fit = calibrate(scores, labels, multilabel)
    calibrated = apply_temperature(scores, fit["temperature"], multilabel)
    assert lwlrap(labels, calibrated) == pytest.approx(lwlrap(labels, scores), abs=1e-9)
    if not multilabel:
        assert map_at_k(labels, calibrated, 3) == pytest.approx(map_at_k(labels, scores, 3), abs=1e-12)
    assert fit["oof_loss_calibrated"] < fit["oof_loss_raw"]
    assert fit["oof_loss_calibrated"] == pytest.approx(calibration_loss(calibrated, labels, multilabel), rel=1e-4)


def test_empty_scores_fail_clearly() -> None:
    with pytest.raises(ValueError, match="no out-of-fold clips"):
        fit_temperature(np.zeros((0, 3)), np.zeros((0, 3)), multilabel=False)
