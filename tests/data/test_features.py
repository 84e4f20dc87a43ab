import numpy as np
import pytest

from freesound_tf.data.features import (
    GLOBAL_FEATURE_NAMES, PERCENTILES, _exact_std, _float_moments, global_features, length_feature, window_bounds,
)


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


def sorted_reference_features(y: np.ndarray, steps: int) -> np.ndarray:
    """The implementation before the segment-sort one: equal-length windows as one matrix, one sort per row."""
    y = np.asarray(y).reshape(-1)
    if len(y) < steps:
        y = np.resize(y, steps)
    start, end = window_bounds(len(y), steps)
    lengths = end - start
    out = np.empty((steps, 12), dtype=np.float64)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        windows = y[start[rows, None] + np.arange(length)]
        out[rows, 0] = windows.mean(axis=1, dtype=np.float64)
        out[rows, 1] = windows.std(axis=1, dtype=np.float64)
        ordered = np.sort(windows, axis=1)
        out[rows, 2] = ordered[:, -1].astype(np.float64) - ordered[:, 0]
        position = np.asarray(PERCENTILES) / 100.0 * (length - 1)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, length - 1)
        low, high = ordered[:, below].astype(np.float64), ordered[:, above].astype(np.float64)
        out[rows, 3:] = low + (high - low) * (position - below)
    return out.astype(np.float32)


# Lengths where windows meet at shared bounds, (steps 50, n 60 / 96) where a window spans three segments,
# and (300001, 3) whose windows are too long for the exact integer std of 16-bit clips (summed numpy's way).
CASES = [(n, 128) for n in (1, 2, 127, 128, 129, 1000, 7919, 44100 * 3 + 17, 44100 * 20 + 5)] + [
    (60, 50), (96, 50), (4099, 7), (4099, 1), (300001, 3)]


@pytest.mark.parametrize("n, steps", CASES)
def test_equal_to_the_sort_per_window_implementation(n, steps):
    """Bit for bit on 16-bit PCM clips (the radix-sorted int16 path) and on float clips."""
    rng = np.random.default_rng(n + steps)
    pcm = (rng.integers(-32768, 32768, n) * rng.random(n) ** 3).astype(np.int16)  # audio-like: dense near 0
    for y in (pcm.astype(np.float32) / 32768, rng.normal(0, 0.3, n).astype(np.float32),
              rng.uniform(-1, 1, n)):
        np.testing.assert_array_equal(global_features(y, steps), sorted_reference_features(y, steps))


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


def test_a_clip_that_stops_being_16_bit_pcm_late_takes_the_float_path():
    """The 16-bit check exits per segment: a non-PCM sample after the first segment still counts."""
    pcm = np.random.default_rng(5).integers(-3000, 3000, 10000).astype(np.float32) / 32768
    pcm[9000] += 1e-6
    np.testing.assert_array_equal(global_features(pcm, 128), sorted_reference_features(pcm, 128))


def test_the_exact_16_bit_std_defers_to_numpy_where_float32_rounding_could_differ():
    """``_exact_std`` gives the float64 std from integer sums, or -1 (numpy's pairwise sum decides) when a
    value within 1e-12 of it rounds to another float32; found here among random window sums."""
    rng = np.random.default_rng(0)
    m = rng.integers(2, 5000, 400000)
    total = rng.integers(-3000, 3000, len(m)) * m // 7
    squares = total ** 2 // m + rng.integers(1, 10 ** 9, len(m))
    std = np.sqrt((m * squares - total * total).astype(np.float64)) / (m * 32768.0)
    ambiguous = np.float32(std * (1 - 1e-12)) != np.float32(std * (1 + 1e-12))
    assert 0 < ambiguous.sum() < 100  # about 3e-5 of random values lie that close to a float32 midpoint
    for i in [*np.flatnonzero(ambiguous), *range(50)]:
        assert _exact_std(total[i], squares[i], m[i]) == (-1.0 if ambiguous[i] else std[i])
    assert _exact_std(0, 0, 70000) == -1.0  # longer windows could overflow int64: numpy's way too


def test_float_windows_whose_fast_mean_or_std_is_ambiguous_are_summed_numpy_s_way():
    """Fast float64 moments are kept only where no value within their error bound rounds to another
    float32; a constant window (variance 0 up to rounding) and a zero-mean one are not such windows."""
    constant = np.full(1000, 0.3, np.float32)
    zero_mean = np.concatenate([np.linspace(0.1, 0.9, 500), -np.linspace(0.1, 0.9, 500)]).astype(np.float32)
    def sums(w: np.ndarray) -> np.ndarray:
        w = w.astype(np.float64)
        return np.array([w.sum(), (w ** 2).sum(), np.abs(w).sum()])

    assert _float_moments(sums(constant), len(constant))[1] == -1.0
    assert np.isnan(_float_moments(sums(zero_mean), len(zero_mean))[0])
    noise = np.random.default_rng(3).normal(0, 0.2, 4000).astype(np.float32)
    y = np.concatenate([noise, constant, zero_mean, 0.3 + noise * 1e-6, noise])
    np.testing.assert_array_equal(global_features(y, 64), sorted_reference_features(y, 64))
