"""RandomErasing: one rectangle per clip in training, identity at inference, serializable; frontend wiring."""
from pathlib import Path

import keras
import numpy as np
import pytest

from freesound_tf.config import ConfigError, FrontendConfig
from freesound_tf.layers import RandomErasing, build_frontend

SHAPE = (6, 40, 32, 2)


def _spectrogram() -> np.ndarray:
    return np.random.default_rng(0).uniform(-80.0, 0.0, SHAPE).astype(np.float32)


def test_identity_at_inference_and_with_probability_zero() -> None:
    x = _spectrogram()
    np.testing.assert_array_equal(RandomErasing(1.0, 0.5, seed=1)(x, training=False), x)
    np.testing.assert_array_equal(RandomErasing(0.0, 0.5, seed=1)(x, training=True), x)


def test_training_erases_one_rectangle_on_every_channel_with_in_range_noise() -> None:
    x = _spectrogram()
    max_area = 0.25
    y = np.asarray(RandomErasing(1.0, max_area, seed=3)(x, training=True))
    changed = y != x
    np.testing.assert_array_equal(changed[..., 0], changed[..., 1])  # all channels alike
    for clip, mask in enumerate(changed[..., 0]):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert len(rows) and len(cols)
        box = np.zeros_like(mask)
        box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
        np.testing.assert_array_equal(mask, box)  # exactly a filled rectangle
        assert mask.sum() <= max_area * mask.size
        erased = y[clip][mask]
        assert erased.min() >= x[clip].min() and erased.max() <= x[clip].max()


def test_probability_is_per_clip() -> None:
    x = np.zeros((200, 20, 16, 1), np.float32) + np.linspace(-1, 0, 16, dtype=np.float32)[None, None, :, None]
    y = np.asarray(RandomErasing(0.3, 0.5, seed=7)(x, training=True))
    share = np.mean([(y[i] != x[i]).any() for i in range(len(x))])
    assert 0.18 < share < 0.42


def test_serializes_alone_and_inside_a_model(tmp_path: Path) -> None:
    layer = RandomErasing(0.4, 0.3, min_area=0.05, seed=2, name="erase")
    clone = RandomErasing.from_config(layer.get_config())
    assert (clone.probability, clone.max_area, clone.min_area, clone.seed) == (0.4, 0.3, 0.05, 2)
    inp = keras.Input((None, 32, 1))
    model = keras.Model(inp, keras.layers.Conv2D(2, 3)(RandomErasing(1.0, 0.3, name="erase")(inp)))
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(restored.get_layer("erase"), RandomErasing)
    x = _spectrogram()[..., :1]
    np.testing.assert_array_equal(restored.predict_on_batch(x), model.predict_on_batch(x))


def test_frontend_inserts_it_only_when_asked_and_config_checks_the_keys() -> None:
    small = {"n_fft": 256, "hop_length": 128, "n_mels": 32}
    with_erasing = build_frontend(FrontendConfig(**small, random_erasing=0.5, random_erasing_max_area=0.2), 8000)
    assert with_erasing.get_layer("random_erasing").max_area == 0.2
    assert "random_erasing" not in [layer.name for layer in build_frontend(FrontendConfig(**small), 8000).layers]
    with pytest.raises(ConfigError, match="frontend.random_erasing"):
        FrontendConfig(random_erasing=1.5)
    with pytest.raises(ConfigError, match="frontend.random_erasing_max_area"):
        FrontendConfig(random_erasing_max_area=0.0)
