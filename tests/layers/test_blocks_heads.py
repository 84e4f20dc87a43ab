"""Pooling modes, pixel-shuffle head, SE and highway blocks against direct numpy computations."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from freesound_tf.layers import (
    HighwayGate,
    PixelShuffleHead,
    axis_pool,
    conv_block,
    global_feature_branch,
    squeeze_excite,
)


def _apply(fn, x: np.ndarray) -> np.ndarray:
    inp = keras.Input(x.shape[1:])
    return keras.Model(inp, fn(inp))(x).numpy()


def _same_pool_1d(x: np.ndarray, axis: int, size: int, stride: int, reduce) -> np.ndarray:
    """TF 'same' pooling along one axis: windows clipped to the valid range (padding never counts)."""
    n = x.shape[axis]
    out_n = -(-n // stride)
    pad_before = max((out_n - 1) * stride + size - n, 0) // 2
    slices = []
    for i in range(out_n):
        lo = max(i * stride - pad_before, 0)
        hi = min(i * stride - pad_before + size, n)
        slices.append(reduce(np.take(x, range(lo, hi), axis=axis), axis=axis))
    return np.stack(slices, axis=axis)


@pytest.mark.parametrize("size", [2, 3])
def test_pooling_modes_against_numpy(size: int) -> None:
    x = np.arange(1 * 5 * 6 * 2, dtype=np.float32).reshape(1, 5, 6, 2) % 7  # odd time length, 'same'
    expected = {
        "avemax1": _same_pool_1d(_same_pool_1d(x, 1, size, 2, np.mean), 2, size, 2, np.max),
        "avemax2": _same_pool_1d(_same_pool_1d(x, 2, size, 2, np.mean), 1, size, 2, np.max),
        "avemax3": _same_pool_1d(_same_pool_1d(x, 2, size, 2, np.max), 1, size, 2, np.mean),
        "max": _same_pool_1d(_same_pool_1d(x, 1, size, 2, np.max), 2, size, 2, np.max),
    }
    for mode, value in expected.items():
        np.testing.assert_allclose(_apply(lambda t: axis_pool(t, mode, size, 2, "p"), x), value, rtol=1e-6)
    assert not np.allclose(expected["avemax1"], expected["avemax3"])
    assert not np.allclose(expected["avemax2"], expected["avemax3"])


def test_avemax_modes_by_hand() -> None:
    x = np.array([[1, 5], [3, 2]], np.float32).reshape(1, 2, 2, 1)  # (time, mel)
    # avemax1: mean over time [2, 3.5] -> max over mel 3.5; avemax2: mean over mel [3, 2.5] -> max over
    # time 3; avemax3: max over mel [5, 3] -> mean over time 4.
    assert _apply(lambda t: axis_pool(t, "avemax1", 2, 2, "p"), x).item() == 3.5
    assert _apply(lambda t: axis_pool(t, "avemax2", 2, 2, "p"), x).item() == 3.0
    assert _apply(lambda t: axis_pool(t, "avemax3", 2, 2, "p"), x).item() == 4.0


def test_unknown_pooling_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="avemax1"):
        axis_pool(keras.Input((4, 4, 1)), "mean", 2, 2, "p")


def test_pixel_shuffle_head_by_hand() -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 2)).astype(np.float32)  # (b, t, m, c)
    expected = np.zeros((2, 4), np.float32)
    for b in range(2):
        shuffled = x[b].reshape(3, 2, 4)  # (t, m/2, 2c): row pair j -> [row 2j channels, row 2j+1 channels]
        expected[b] = shuffled.max(axis=0).mean(axis=0)
    np.testing.assert_allclose(_apply(PixelShuffleHead(), x), expected, rtol=1e-6)
    # Explicitly: feature 0 = mean over pairs of max-over-time of even rows, channel 0.
    assert expected[0, 0] == pytest.approx(np.mean([x[0, :, 0, 0].max(), x[0, :, 2, 0].max()]))
    assert expected[0, 2] == pytest.approx(np.mean([x[0, :, 1, 0].max(), x[0, :, 3, 0].max()]))


def test_pixel_shuffle_head_rejects_odd_mel() -> None:
    with pytest.raises(ValueError, match="even"):
        PixelShuffleHead()(keras.Input((None, 5, 4)))


def test_squeeze_excite_matches_numpy() -> None:
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 8)).astype(np.float32)
    inp = keras.Input(x.shape[1:])
    model = keras.Model(inp, squeeze_excite(inp, ratio=4, name="se"))
    w1, b1 = model.get_layer("se_reduce").get_weights()
    w2, b2 = model.get_layer("se_expand").get_weights()
    assert w1.shape == (8, 2)
    pooled = x.mean(axis=(1, 2))
    scale = 1 / (1 + np.exp(-(np.maximum(pooled @ w1 + b1, 0) @ w2 + b2)))
    np.testing.assert_allclose(model(x).numpy(), x * scale[:, None, None, :], rtol=1e-5, atol=1e-6)


def test_highway_gate_mixes_inputs() -> None:
    gate, transformed, carried = (np.full((1, 2), v, np.float32) for v in (0.25, 4.0, 8.0))
    np.testing.assert_allclose(HighwayGate()([gate, transformed, carried]).numpy(), [[7.0, 7.0]])


@pytest.mark.parametrize("options", [{}, {"se": True}, {"cat": True}, {"se": True, "cat": True},
                                     {"gated_highway": True}, {"smooth_pool": False}])
def test_conv_block_options_keep_shape(options: dict) -> None:
    x = np.random.default_rng(3).standard_normal((1, 6, 4, 3)).astype(np.float32)
    assert _apply(lambda t: conv_block(t, 5, 0.85, name="b", **options), x).shape == (1, 6, 4, 5)


def test_conv_cat_mixes_first_conv_after_its_pool_with_the_second_by_a_plain_1x1_conv() -> None:
    inp = keras.Input((6, 4, 3))
    model = keras.Model(inp, conv_block(inp, 5, 0.85, name="b", cat=True))
    cat = model.get_layer("b_cat")
    assert [t.name for t in cat.input] == [model.get_layer("b_smooth").output.name,
                                           model.get_layer("b_2_relu").output.name]
    mix = model.get_layer("b_mix_conv")
    assert mix.kernel_size == (1, 1) and mix.use_bias and mix.activation is keras.activations.linear
    assert model.output.name == mix.output.name  # no batch norm or activation after it


def test_global_feature_branch_shape() -> None:
    x = np.random.default_rng(4).standard_normal((2, 16, 12)).astype(np.float32)
    assert _apply(lambda t: global_feature_branch(t, units=6), x).shape == (2, 6)
