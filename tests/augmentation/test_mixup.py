import numpy as np
import pytest

from freesound_tf.augmentation import mixup_batch


def _batch(n=64, length=50, classes=6, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {"waveform": rng.normal(size=(n, length)).astype(np.float32),
              "length": rng.random((n, 1)).astype(np.float32)}
    labels = np.zeros((n, classes), np.float32)
    labels[np.arange(n), rng.integers(0, classes, n)] = 1.0
    return inputs, labels


def _recover_partner(original, mixed, lam):
    """For each mixed row find the partner j such that mixed = lam*x_i + (1-lam)*x_j."""
    partners = []
    for i in range(len(original)):
        residual = (mixed[i] - lam * original[i]) / (1 - lam)
        partners.append(int(np.argmin(np.abs(original - residual).sum(axis=1))))
    return partners


def test_fixed_lambda_blend_rule_mixes_audio_side_inputs_and_labels_alike():
    inputs, labels = _batch()
    out, out_labels = mixup_batch(inputs, labels, np.random.default_rng(1), prob=1.0, lam=0.7)
    partners = _recover_partner(inputs["waveform"], out["waveform"], 0.7)
    for i, j in enumerate(partners):
        if j == i:
            continue
        np.testing.assert_allclose(out["waveform"][i], 0.7 * inputs["waveform"][i] + 0.3 * inputs["waveform"][j], atol=1e-5)
        np.testing.assert_allclose(out["length"][i], 0.7 * inputs["length"][i] + 0.3 * inputs["length"][j], atol=1e-6)
        np.testing.assert_allclose(out_labels[i], 0.7 * labels[i] + 0.3 * labels[j], atol=1e-6)
    assert sum(j != i for i, j in enumerate(partners)) > 50


def test_or_rule_keeps_every_label_of_both_clips():
    inputs, labels = _batch()
    out, out_labels = mixup_batch(inputs, labels, np.random.default_rng(2), prob=1.0, lam=0.7, label_rule="or")
    partners = _recover_partner(inputs["waveform"], out["waveform"], 0.7)
    for i, j in enumerate(partners):
        np.testing.assert_array_equal(out_labels[i], np.maximum(labels[i], labels[j]))
    assert set(np.unique(out_labels)) <= {0.0, 1.0}


def test_probability_controls_share_of_mixed_examples():
    inputs, labels = _batch(n=4000, length=4)
    out, _ = mixup_batch(inputs, labels, np.random.default_rng(3), prob=0.3)
    changed = np.any(out["waveform"] != inputs["waveform"], axis=1).mean()
    assert 0.25 < changed < 0.35
    same, same_labels = mixup_batch(inputs, labels, np.random.default_rng(3), prob=0.0)
    np.testing.assert_array_equal(same["waveform"], inputs["waveform"])
    np.testing.assert_array_equal(same_labels, labels)


def test_beta_mode_draws_weights_per_example():
    inputs, labels = _batch(n=200)
    _, out_labels = mixup_batch(inputs, labels, np.random.default_rng(4), prob=1.0, mode="beta", alpha=0.4)
    weights = np.round(out_labels.max(axis=1), 4)
    assert len(np.unique(weights)) > 50  # not one fixed lambda
    np.testing.assert_allclose(out_labels.sum(axis=1), 1.0, atol=1e-5)  # blend keeps label mass


@pytest.mark.parametrize("rule", ["blend", "or"])
def test_same_seed_same_result(rule):
    inputs, labels = _batch()
    a = mixup_batch(inputs, labels, np.random.default_rng(9), prob=0.5, label_rule=rule)
    b = mixup_batch(inputs, labels, np.random.default_rng(9), prob=0.5, label_rule=rule)
    np.testing.assert_array_equal(a[0]["waveform"], b[0]["waveform"])
    np.testing.assert_array_equal(a[1], b[1])
