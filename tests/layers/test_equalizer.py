"""RandomEqualizer: a smooth bounded gain over the mel axis per clip in training, identity at inference."""
from pathlib import Path

import keras
import numpy as np
import pytest

from freesound_tf.config import ConfigError, FrontendConfig
from freesound_tf.layers import RandomEqualizer, build_frontend


def _spectrogram(shape=(64, 30, 40, 1)) -> np.ndarray:
    return np.random.default_rng(0).uniform(-60.0, 0.0, shape).astype(np.float32)


def test_identity_at_inference_and_at_zero_gain() -> None:
    x = _spectrogram()
    np.testing.assert_array_equal(RandomEqualizer(12.0, seed=1)(x, training=False), x)
    np.testing.assert_array_equal(RandomEqualizer(0.0, seed=1)(x, training=True), x)


def test_gain_is_per_clip_constant_over_time_smooth_and_bounded() -> None:
    x = _spectrogram()
    gain = np.asarray(RandomEqualizer(12.0, floor=-80.0, seed=3)(x, training=True)) - x  # nothing reaches -80
    np.testing.assert_allclose(gain, np.broadcast_to(gain[:, :1], gain.shape), atol=1e-4)  # same curve each frame
    curves = gain[:, 0, :, 0]
    assert np.abs(curves).max() <= 12.0 + 1e-4
    assert np.abs(curves).max() > 4.0 and np.std(curves[:, 0]) > 1.0  # clips differ, gains are real
    assert np.abs(np.diff(curves, axis=1)).max() <= 2 * np.pi * 12.0 / 40  # slope bound of 3 cosines: no jumps


def test_floor_holds_silence_at_the_floor() -> None:
    x = np.full((8, 5, 16, 1), -80.0, np.float32)
    y = np.asarray(RandomEqualizer(10.0, floor=-80.0, seed=2)(x, training=True))
    assert y.min() >= -80.0 and (y == -80.0).any()


def test_serializes_and_the_frontend_wires_it(tmp_path: Path) -> None:
    inp = keras.Input((None, 32, 1))
    model = keras.Model(inp, keras.layers.Conv2D(2, 3)(RandomEqualizer(6.0, floor=-70.0, name="eq")(inp)))
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert (restored.get_layer("eq").max_db, restored.get_layer("eq").floor) == (6.0, -70.0)
    x = _spectrogram((2, 10, 32, 1))
    np.testing.assert_array_equal(restored.predict_on_batch(x), model.predict_on_batch(x))
    small = {"n_fft": 256, "hop_length": 128, "n_mels": 32}
    assert build_frontend(FrontendConfig(**small, eq_db=6.0), 8000).get_layer("random_equalizer").max_db == 6.0
    assert "random_equalizer" not in [layer.name for layer in build_frontend(FrontendConfig(**small), 8000).layers]
    with pytest.raises(ConfigError, match="frontend.eq_db"):
        FrontendConfig(eq_db=-1.0)
