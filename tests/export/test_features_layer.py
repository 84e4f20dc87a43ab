"""The in-graph global statistics and length equal the numpy definitions the cache uses."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from freesound_tf.data.features import global_features, length_feature
from freesound_tf.export import GlobalFeatures, global_features_tf, length_feature_tf

LENGTHS = (1, 5, 127, 128, 129, 300, 8001)


def _clips(n: int, batch: int = 2) -> np.ndarray:
    rng = np.random.default_rng(n)
    return (0.5 * rng.standard_normal((batch, n)) + rng.uniform(-0.1, 0.1, (batch, 1))).astype(np.float32)


def test_unknown_length_matches_numpy_for_short_and_long_clips() -> None:
    traced = tf.function(lambda w: global_features_tf(w, 128),
                         input_signature=[tf.TensorSpec((None, None), tf.float32)])
    for n in LENGTHS:
        y = _clips(n)
        expected = np.stack([global_features(row, 128) for row in y])
        np.testing.assert_allclose(traced(y).numpy(), expected, atol=1e-5, err_msg=f"length {n}")
    assert len(traced._list_all_concrete_functions()) == 1  # one graph served every length


@pytest.mark.parametrize("n", [3, 129, 4000])
def test_static_length_matches_numpy(n: int) -> None:
    y = _clips(n, batch=1)
    traced = tf.function(lambda w: global_features_tf(w, 16), input_signature=[tf.TensorSpec((1, n), tf.float32)])
    np.testing.assert_allclose(traced(y).numpy()[0], global_features(y[0], 16), atol=1e-5)


def test_ties_and_constant_windows() -> None:
    y = np.repeat(np.array([[0.0, 1.0, 1.0, -2.0, 0.5]], np.float32), 40, axis=1)  # many ties, 200 samples
    np.testing.assert_allclose(GlobalFeatures(steps=32)(y).numpy()[0], global_features(y[0], 32), atol=1e-6)
    flat = np.full((1, 50), 0.25, np.float32)
    out = global_features_tf(flat, 8).numpy()[0]
    np.testing.assert_allclose(out[:, 0], 0.25)
    np.testing.assert_allclose(out[:, 1:3], 0.0, atol=1e-7)  # std and range of a constant clip


def test_length_feature_static_and_dynamic() -> None:
    y = np.zeros((3, 12345), np.float32)
    expected = length_feature(12345, 8000, 10.0)
    np.testing.assert_allclose(length_feature_tf(tf.constant(y), 8000, 10.0).numpy(), np.full((3, 1), expected))
    traced = tf.function(lambda w: length_feature_tf(w, 8000, 10.0),
                         input_signature=[tf.TensorSpec((None, None), tf.float32)])
    np.testing.assert_allclose(traced(y).numpy(), np.full((3, 1), expected), rtol=1e-7)


def test_padded_batch_rows_use_their_own_lengths() -> None:
    """Each row of a zero-padded batch gets the statistics of its own clip, short clips included."""
    lengths = [3, 127, 300, 8001]
    rows = [_clips(n, batch=1)[0] for n in lengths]
    batch = np.full((len(rows), max(lengths)), 7.0, np.float32)  # padding that must not leak in
    for k, row in enumerate(rows):
        batch[k, :len(row)] = row
    traced = tf.function(lambda w, n: global_features_tf(w, 128, lengths=n),
                         input_signature=[tf.TensorSpec((None, None), tf.float32), tf.TensorSpec((None,), tf.int32)])
    got = traced(batch, np.array(lengths, np.int32)).numpy()
    for k, row in enumerate(rows):
        np.testing.assert_allclose(got[k], global_features(row, 128), atol=1e-5, err_msg=f"length {lengths[k]}")
