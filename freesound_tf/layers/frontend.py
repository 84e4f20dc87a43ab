"""In-graph log-mel frontend: waveform (batch, samples) -> (batch, time, mel, channels).

Built from kapre's STFT, mel filterbank, Delta and SpecAugment layers plus a few small
layers of ours where kapre 0.4.1 does not do what the recipe needs:

* ``SpectralPower``: |X|**power in one op (kapre's Magnitude would take a square root that
  power 2 immediately undoes).
* ``TrainableMelFilterbank``: kapre dropped its trainable filterbank; ours is a non-negative
  weight initialised from the same librosa mel matrix as kapre's ``ApplyFilterbank``.
* ``ClipDecibel``: dB relative to each clip's maximum, floored ``top_db`` below it
  (librosa ``power_to_db(ref=np.max)``). kapre's ``MagnitudeToDecibel`` only uses the clip max
  for the floor and keeps absolute levels, so loud and quiet clips would differ by an offset.
* ``FrequencyEncoding``: a -1..1 map over the mel axis (kapre's ``ConcatenateFrequencyMap``
  is 0..1).

Every layer runs in float32 whatever the global dtype policy, so ``mixed_float16`` later
only affects the convolutional body.
"""
from __future__ import annotations

from typing import Any

import kapre
import keras
import numpy as np
from keras import ops

from freesound_tf.config import FrontendConfig
from freesound_tf.layers.equalizer import RandomEqualizer
from freesound_tf.layers.erasing import RandomErasing
from freesound_tf.layers.time_shift import RandomTimeShiftFlip

FRONTEND_DTYPE = "float32"
_PACKAGE = "freesound_tf"


def mel_matrix(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) slaney-normalised mel matrix, exactly the one kapre applies."""
    bank = kapre.backend.filterbank_mel(**_filterbank_kwargs(sample_rate, n_fft, n_mels, f_min, f_max))
    return np.asarray(bank, dtype=np.float32)


def _filterbank_kwargs(sample_rate: int, n_fft: int, n_mels: int, f_min: float,
                       f_max: float | None) -> dict[str, Any]:
    return {"sample_rate": sample_rate, "n_freq": n_fft // 2 + 1, "n_mels": n_mels, "f_min": f_min,
            "f_max": sample_rate / 2 if f_max is None else f_max, "htk": False, "norm": "slaney"}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpectralPower(keras.layers.Layer):
    """|X| ** power of a complex STFT; power 2 is computed as re**2 + im**2 (no square root)."""

    def __init__(self, power: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if power not in (1.0, 2.0):
            raise ValueError(f"SpectralPower: power must be 1.0 or 2.0, got {power}")
        self.power = float(power)

    def call(self, stft):
        real, imag = ops.real(stft), ops.imag(stft)
        energy = real * real + imag * imag
        return energy if self.power == 2.0 else ops.sqrt(energy)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "power": self.power}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TrainableMelFilterbank(keras.layers.Layer):
    """Mel filterbank as a learnable, non-negative (n_freq, n_mels) weight.

    Input (batch, time, n_fft // 2 + 1, 1), output (batch, time, n_mels, 1). The weight starts
    as ``mel_matrix(...)``; only the recipe numbers are stored in the config, the learnt
    matrix travels with the weights.
    """

    def __init__(self, sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                 f_max: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.n_mels = int(n_mels)
        self.f_min = float(f_min)
        self.f_max = None if f_max is None else float(f_max)

    def build(self, input_shape) -> None:
        initial = mel_matrix(self.sample_rate, self.n_fft, self.n_mels, self.f_min, self.f_max)
        self.filterbank = self.add_weight(
            name="filterbank", shape=initial.shape,
            initializer=keras.initializers.Constant(initial),
            constraint=keras.constraints.NonNeg(), trainable=True,
        )

    def call(self, spectrum):
        # Same contraction as kapre's ApplyFilterbank (one large matmul): (b, t, f, c) . (f, m) -> (b, t, c, m)
        mel = ops.tensordot(spectrum, self.filterbank, axes=[[2], [0]])
        return ops.transpose(mel, (0, 1, 3, 2))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:2], self.n_mels, input_shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "sample_rate": self.sample_rate, "n_fft": self.n_fft,
                "n_mels": self.n_mels, "f_min": self.f_min, "f_max": self.f_max}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ClipDecibel(keras.layers.Layer):
    """Spectrogram -> dB relative to each clip's maximum, floored at ``-top_db`` (output in [-top_db, 0]).

    ``power`` says what the input holds: 2 for power (10 log10), 1 for magnitude (20 log10). Inputs are
    clamped at -100 dB re. 1 first. Same as librosa ``power_to_db(S, ref=np.max, top_db=top_db)``
    (or ``amplitude_to_db``) per batch item.
    """

    def __init__(self, top_db: float = 80.0, power: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.top_db = float(top_db)
        self.power = float(power)

    def call(self, spectrogram):
        scale = 20.0 / self.power
        amin = 10.0 ** (-100.0 / scale)
        db = (scale / np.log(10.0)) * ops.log(ops.maximum(spectrogram, amin))
        db = db - ops.max(db, axis=tuple(range(1, len(spectrogram.shape))), keepdims=True)
        return ops.maximum(db, -self.top_db)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "top_db": self.top_db, "power": self.power}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FrequencyEncoding(keras.layers.Layer):
    """Appends one channel holding a linear -1..1 ramp over the mel (axis 2) to (b, t, m, c)."""

    def call(self, x):
        n_mels = x.shape[2]
        ramp = ops.reshape(ops.linspace(-1.0, 1.0, n_mels, dtype=x.dtype), (1, 1, n_mels, 1))
        return ops.concatenate([x, ops.zeros_like(x[..., :1]) + ramp], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], input_shape[3] + 1)


def frontend_channels(config: FrontendConfig) -> int:
    """Channels of the frontend output: log-mel, plus delta and delta-delta, plus the frequency map."""
    return 1 + 2 * int(config.deltas) + int(config.frequency_encoding)


def build_frontend(config: FrontendConfig, sample_rate: int, input_samples: int | None = None,
                   name: str = "frontend") -> keras.Model:
    """Waveform (batch, samples) -> log-mel (batch, frames, n_mels, channels) as a float32 sub-model.

    Frames = ceil(samples / hop_length) (the STFT zero-pads the end), e.g. 431 for 5 s at
    44.1 kHz with hop 512. ``input_samples=None`` accepts any length.
    """
    if config.f_max is not None and config.f_max > sample_rate / 2:
        raise ValueError(f"frontend.f_max: {config.f_max} Hz is above Nyquist ({sample_rate / 2} Hz) "
                         f"for sample rate {sample_rate}; lower it or leave it unset")
    f32 = {"dtype": FRONTEND_DTYPE}
    waveform = keras.Input((input_samples,), name="waveform", dtype=FRONTEND_DTYPE)
    x = keras.layers.Reshape((-1, 1), name="add_channel", **f32)(waveform)
    x = kapre.STFT(n_fft=config.n_fft, hop_length=config.hop_length, pad_end=True,
                   input_data_format="channels_last", output_data_format="channels_last",
                   name="stft", **f32)(x)
    x = SpectralPower(config.power, name="spectral_power", **f32)(x)
    if config.trainable_filterbank:
        x = TrainableMelFilterbank(sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max,
                                   name="mel_filterbank", **f32)(x)
    else:
        fb_kwargs = _filterbank_kwargs(sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max)
        x = kapre.ApplyFilterbank(type="mel", filterbank_kwargs=fb_kwargs, data_format="channels_last",
                                  name="mel_filterbank", **f32)(x)
    x = ClipDecibel(top_db=config.top_db, power=config.power, name="decibel", **f32)(x)
    if config.eq_db:
        x = RandomEqualizer(config.eq_db, floor=-config.top_db, name="random_equalizer", **f32)(x)
    if config.time_masks or config.freq_masks:
        # Masks are filled with the floor (silence); kapre draws widths in [0, width) and is a no-op
        # outside training.
        x = kapre.SpecAugment(freq_mask_param=config.freq_mask_width, time_mask_param=config.time_mask_width,
                              n_freq_masks=config.freq_masks, n_time_masks=config.time_masks,
                              mask_value=-config.top_db, data_format="channels_last",
                              name="spec_augment", **f32)(x)
    if config.random_erasing:
        x = RandomErasing(config.random_erasing, config.random_erasing_max_area, name="random_erasing", **f32)(x)
    if config.time_shift or config.time_flip:
        x = RandomTimeShiftFlip(config.time_shift, config.time_flip, name="time_shift_flip", **f32)(x)
    channels = [x]
    if config.deltas:
        delta = kapre.Delta(win_length=5, data_format="channels_last", name="delta", **f32)(x)
        channels += [delta, kapre.Delta(win_length=5, data_format="channels_last", name="delta_delta", **f32)(delta)]
    if len(channels) > 1:
        x = keras.layers.Concatenate(axis=-1, name="stack_deltas", **f32)(channels)
    if config.frequency_encoding:
        x = FrequencyEncoding(name="frequency_encoding", **f32)(x)
    return keras.Model(waveform, x, name=name)
