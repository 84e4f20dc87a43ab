import numpy as np
import pytest

from freesound_tf.data.features import GLOBAL_FEATURE_NAMES, global_features, length_feature


def reference_global_features(x: np.ndarray, steps: int) -> np.ndarray:
    """Direct per-window loop of the documented definition (short clips tiled to ``steps``)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < steps:
        x = np.resize(x, steps)
    stride = len(x) / steps
    rows = []
    for s in range(steps):
        i = s * stride
        w = x[max(0, int(i - stride / 2)):int(i + 1.5 * stride)]
        rows.append([w.mean(), w.std(), w.max() - w.min(),
                     *np.percentile(w, [0, 1, 25, 30, 50, 60, 75, 99, 100])])
    return np.array(rows)


@pytest.mark.parametrize("n", [1, 2, 127, 128, 129, 300, 1000, 5000, 7919, 44100 * 3 + 17])
def test_matches_loop_reference(n):
    y = np.random.default_rng(n).normal(0, 0.3, n).astype(np.float32)
    out = global_features(y, 128)
    assert out.shape == (128, 12) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference_global_features(y, 128), atol=1e-6, rtol=0)


@pytest.mark.parametrize("steps", [1, 7, 50])
def test_other_step_counts(steps):
    y = np.random.default_rng(steps).uniform(-1, 1, 4099).astype(np.float32)
    np.testing.assert_allclose(global_features(y, steps), reference_global_features(y, steps), atol=1e-6)


def test_hand_computed_values():
    # 8 samples, 4 steps: stride 2, windows [0:3], [1:5], [3:7], [5:8].
    y = np.arange(8, dtype=np.float32)
    out = global_features(y, 4)
    np.testing.assert_allclose(out[:, 0], [1.0, 2.5, 4.5, 6.0])  # means
    np.testing.assert_allclose(out[:, 2], [2.0, 3.0, 3.0, 2.0])  # ranges
    np.testing.assert_allclose(out[1, 3:], [1.0, 1.03, 1.75, 1.9, 2.5, 2.8, 3.25, 3.97, 4.0])


def test_names_and_empty_input():
    assert len(GLOBAL_FEATURE_NAMES) == 12 and GLOBAL_FEATURE_NAMES[:3] == ("mean", "std", "range")
    with pytest.raises(ValueError, match="empty"):
        global_features(np.zeros(0, np.float32))


def test_length_feature():
    assert length_feature(441000, 44100) == pytest.approx(1.0)
    assert length_feature(22050, 44100, norm_seconds=5.0) == pytest.approx(0.1)
