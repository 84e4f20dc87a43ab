"""Log-mel frontend against librosa, trainable filterbank behaviour, extra channels, masking."""
from __future__ import annotations

import math

import keras
import librosa
import numpy as np
import pytest

from freesound_tf.config import FrontendConfig
from freesound_tf.layers import (
    ClipDecibel,
    FrequencyEncoding,
    SpectralPower,
    TrainableMelFilterbank,
    build_frontend,
    frontend_channels,
    mel_matrix,
)

SR = 44100


def _clips(n: int = 2, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    clips = [0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.size) for f in (440.0, 3000.0)]
    return np.stack(clips[:n]).astype(np.float32) * np.array([[1.0], [0.01]], dtype=np.float32)[:n]


def _librosa_logmel(y: np.ndarray, config: FrontendConfig, sr: int) -> np.ndarray:
    """Reference: zero-pad the end to whole hops (as the frontend does), uncentred STFT, mel, dB re. max."""
    frames = math.ceil(y.size / config.hop_length)
    padded = np.pad(y.astype(np.float64), (0, (frames - 1) * config.hop_length + config.n_fft - y.size))
    mel = librosa.feature.melspectrogram(y=padded, sr=sr, n_fft=config.n_fft, hop_length=config.hop_length,
                                         center=False, power=config.power, n_mels=config.n_mels,
                                         fmin=config.f_min, fmax=config.f_max, norm="slaney", htk=False)
    to_db = librosa.power_to_db if config.power == 2.0 else librosa.amplitude_to_db
    return to_db(mel, ref=np.max, top_db=config.top_db).T  # (frames, mels)


@pytest.mark.parametrize("trainable", [False, True])
@pytest.mark.parametrize("power", [2.0, 1.0])
def test_frontend_matches_librosa_at_init(trainable: bool, power: float) -> None:
    config = FrontendConfig(trainable_filterbank=trainable, power=power)
    clips = _clips()  # the second clip is 40 dB quieter: the per-clip reference must remove that
    out = build_frontend(config, SR)(clips).numpy()
    assert out.shape == (2, math.ceil(SR / 512), 64, 1)
    for clip, logmel in zip(clips, out):
        expected = _librosa_logmel(clip, config, SR)
        np.testing.assert_allclose(logmel[..., 0], expected, atol=0.02)
    assert out.max(axis=(1, 2, 3)) == pytest.approx([0.0, 0.0])
    assert out.min() == pytest.approx(-80.0)


def test_five_seconds_give_431_frames_and_any_length_works() -> None:
    frontend = build_frontend(FrontendConfig(), SR)  # variable length
    assert frontend(np.zeros((1, 5 * SR), np.float32)).shape == (1, 431, 64, 1)
    assert frontend(np.zeros((1, 1000), np.float32)).shape == (1, 2, 64, 1)
    assert build_frontend(FrontendConfig(), SR, 5 * SR).output.shape == (None, 431, 64, 1)


def test_fixed_filterbank_is_kapre_matrix_and_trainable_starts_equal() -> None:
    expected = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=64, norm="slaney").T
    np.testing.assert_allclose(mel_matrix(SR, 1024, 64, 0.0, None), expected, rtol=1e-6)
    frontend = build_frontend(FrontendConfig(trainable_filterbank=True), SR)
    np.testing.assert_allclose(frontend.get_layer("mel_filterbank").filterbank.numpy(), expected, rtol=1e-6)


def _train_step(model: keras.Model, x: np.ndarray, y: np.ndarray) -> None:
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="binary_crossentropy")
    model.train_on_batch(x, y)


@pytest.mark.parametrize("trainable", [False, True])
def test_filterbank_learns_only_when_trainable(trainable: bool) -> None:
    frontend = build_frontend(FrontendConfig(trainable_filterbank=trainable), SR, SR)
    head = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(frontend.output))
    model = keras.Model(frontend.input, head)
    clips = _clips()
    before = frontend(clips).numpy()
    weights_before = [w.numpy().copy() for w in frontend.trainable_weights]
    _train_step(model, clips, np.array([[1.0], [0.0]], np.float32))
    after = frontend(clips).numpy()
    if trainable:
        assert len(weights_before) == 1
        assert not np.allclose(weights_before[0], frontend.trainable_weights[0].numpy())
        assert not np.allclose(before, after)
    else:
        assert weights_before == []
        np.testing.assert_array_equal(before, after)


def test_trainable_filterbank_stays_non_negative() -> None:
    spectrum = keras.Input((3, 513, 1))
    filterbank = TrainableMelFilterbank(SR, 1024, 64)
    model = keras.Model(spectrum, filterbank(spectrum))
    # Loss = mean output of a positive spectrum: gradient descent pushes every weight down.
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=100.0), loss=lambda y, p: keras.ops.mean(p))
    model.train_on_batch(np.ones((2, 3, 513, 1), np.float32), np.zeros((2, 3, 64, 1), np.float32))
    weights = filterbank.filterbank.numpy()
    assert weights.min() >= 0.0
    assert (weights == 0).sum() > (mel_matrix(SR, 1024, 64, 0.0, None) == 0).sum()


def test_extra_channels_deltas_and_frequency_map() -> None:
    config = FrontendConfig(deltas=True, frequency_encoding=True)
    out = build_frontend(config, SR)(_clips(1)).numpy()[0]
    assert out.shape[-1] == frontend_channels(config) == 4
    logmel = out[..., 0]
    # Interior frames: librosa's Savitzky-Golay delta equals the 5-point regression kapre uses.
    delta = librosa.feature.delta(logmel, width=5, axis=0)
    np.testing.assert_allclose(out[2:-2, :, 1], delta[2:-2], atol=1e-3)
    np.testing.assert_allclose(out[4:-4, :, 2], librosa.feature.delta(delta, width=5, axis=0)[4:-4], atol=1e-3)
    np.testing.assert_allclose(out[:, :, 3], np.tile(np.linspace(-1, 1, 64), (out.shape[0], 1)), atol=1e-6)


def test_spec_augment_masks_only_in_training() -> None:
    config = FrontendConfig(time_masks=2, time_mask_width=10, freq_masks=2, freq_mask_width=8)
    frontend = build_frontend(config, SR)
    plain = build_frontend(FrontendConfig(), SR)
    clips = np.stack([_clips(1)[0]] * 8)
    np.testing.assert_array_equal(frontend(clips, training=False).numpy(), plain(clips).numpy())
    masked = frontend(clips, training=True).numpy()
    changed = masked != plain(clips).numpy()
    assert changed.any()
    assert np.all(masked[changed] == -config.top_db)  # masks are filled with the floor


@pytest.mark.parametrize("layer", [SpectralPower(power=1.0), TrainableMelFilterbank(16000, 512, 40, 20.0, 7000.0),
                                   ClipDecibel(top_db=60.0, power=1.0), FrequencyEncoding()])
def test_custom_layers_config_round_trip(layer: keras.layers.Layer) -> None:
    config = keras.saving.serialize_keras_object(layer)
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert type(rebuilt) is type(layer)
    assert rebuilt.get_config() == layer.get_config()


def test_frontend_stays_float32_under_mixed_precision() -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        frontend = build_frontend(FrontendConfig(trainable_filterbank=True, deltas=True), SR, SR)
        assert frontend.output.dtype == "float32"
        assert frontend.get_layer("mel_filterbank").filterbank.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
