"""LocallyConnected1D against a direct numpy loop; the small stacker layers against their formulas."""
import keras
import numpy as np
import pytest

from freesound_tf.stacking.layers import AppendWeightedMean, LocallyConnected1D, SelectRow, ShiftedTanh


def _numpy_locally_connected(x, kernel, bias, kernel_size, strides):
    batch, _, channels = x.shape
    length, _, filters = kernel.shape
    out = np.zeros((batch, length, filters))
    for b in range(batch):
        for i in range(length):
            for f in range(filters):
                total = bias[i, f] if bias is not None else 0.0
                for j in range(kernel_size):
                    for c in range(channels):
                        total += x[b, i * strides + j, c] * kernel[i, j * channels + c, f]
                out[b, i, f] = total
    return out


@pytest.mark.parametrize("kernel_size, strides, use_bias", [(3, 2, True), (2, 1, False), (1, 1, False), (1, 1, True)])
def test_locally_connected_matches_numpy_loop(kernel_size, strides, use_bias):
    rng = np.random.default_rng(kernel_size * 10 + strides)
    x = rng.normal(size=(3, 8, 4)).astype(np.float32)
    layer = LocallyConnected1D(5, kernel_size, strides, use_bias=use_bias)
    y = layer(x)
    length = (8 - kernel_size) // strides + 1
    assert tuple(y.shape) == (3, length, 5) == layer.compute_output_shape(x.shape)
    # Random weights everywhere, so a wrong kernel row layout or shared weights would show.
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()]
    layer.set_weights(weights)
    expected = _numpy_locally_connected(x, weights[0], weights[1] if use_bias else None, kernel_size, strides)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_locally_connected_weights_are_not_shared_between_positions():
    layer = LocallyConnected1D(1, 1, use_bias=False)
    layer.build((None, 3, 1))
    layer.set_weights([np.array([[[1.0]], [[2.0]], [[3.0]]], np.float32)])
    np.testing.assert_array_equal(np.asarray(layer(np.ones((1, 3, 1), np.float32)))[0, :, 0], [1.0, 2.0, 3.0])


def test_locally_connected_rejects_bad_shapes():
    with pytest.raises(ValueError, match="longer than the 2 input steps"):
        LocallyConnected1D(1, kernel_size=3)(np.zeros((1, 2, 1), np.float32))
    with pytest.raises(ValueError, match="must all be >= 1"):
        LocallyConnected1D(0)


def test_locally_connected_config_round_trip_keeps_initializer_and_constraint():
    layer = LocallyConnected1D(2, 3, 2, use_bias=False, kernel_initializer=SelectRow(1),
                               kernel_constraint=keras.constraints.UnitNorm(axis=1), name="lc")
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(clone, LocallyConnected1D) and clone.get_config() == layer.get_config()
    assert isinstance(clone.kernel_constraint, keras.constraints.UnitNorm) and clone.kernel_constraint.axis == 1
    clone.build((None, 9, 4))
    kernel = np.asarray(clone.kernel)
    assert kernel.shape == (4, 12, 2)
    np.testing.assert_array_equal(kernel[:, 1, :], 1.0)
    assert kernel.sum() == 4 * 2  # zero everywhere else


def test_select_row_rejects_a_missing_row():
    with pytest.raises(ValueError, match="SelectRow"):
        SelectRow(5)((2, 3, 1))


def test_append_weighted_mean_and_shifted_tanh_follow_their_formulas():
    scores = np.random.default_rng(0).random((4, 6, 3)).astype(np.float32)
    out = np.asarray(AppendWeightedMean([2.0, 1.0, 1.0])(scores))
    np.testing.assert_array_equal(out[..., :3], scores)
    np.testing.assert_allclose(out[..., 3], (2 * scores[..., 0] + scores[..., 1] + scores[..., 2]) / 4, rtol=1e-6)
    x = np.linspace(-3, 3, 13, dtype=np.float32)
    np.testing.assert_allclose(np.asarray(ShiftedTanh(1.6)(x)), (np.tanh(x - 1.6) + 1) / 2, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="one weight per member"):
        AppendWeightedMean([1.0, 1.0])(scores)
