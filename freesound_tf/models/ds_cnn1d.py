"""ds_cnn1d: the 1D CNN on a short-window STFT of the FAT2019 3rd-place solution (seed 000).

waveform -> kapre STFT with a short window (``n_fft`` 256 = 5.8 ms at 44.1 kHz, hop
``hop_length``) -> magnitude in dB re. the clip maximum -> (b, frames, n_fft // 2 + 1): the
frequency bins are the channels and the size-3 convolutions run over time -> the deep-supervised
blocks and head of ds_cnn2d (``freesound_tf.layers.deep_supervision``; 2x pooling over time).

The STFT size comes from ``[model.options]`` (``n_fft``, ``hop_length``), not from ``[frontend]``,
so a recipe's mel settings never change it. Of ``[frontend]`` only ``power``, ``top_db`` and the
SpecAugment masks apply; the mel-only options (trainable filterbank, deltas, frequency map) are
rejected.
"""
from __future__ import annotations

from dataclasses import dataclass

import kapre
import keras

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig
from freesound_tf.layers import ClipDecibel, SpectralPower
from freesound_tf.layers.frontend import FRONTEND_DTYPE
from freesound_tf.models.ds_cnn2d import DsCnnOptions, assemble, check_option, parse_options
from freesound_tf.models.registry import register


@dataclass(frozen=True)
class DsCnn1dOptions(DsCnnOptions):
    """``DsCnnOptions`` plus the STFT size (the seed's window of 256 samples)."""

    n_fft: int = 256
    hop_length: int = 128  # not in the write-up: half a window

    def __post_init__(self) -> None:
        super().__post_init__()
        check_option(self.n_fft >= 16, "model.options.n_fft", "must be >= 16")
        check_option(0 < self.hop_length <= self.n_fft, "model.options.hop_length", "must be in (0, n_fft]")


def build_stft_frontend(frontend: FrontendConfig, n_fft: int, hop_length: int, input_samples: int | None = None,
                        name: str = "frontend") -> keras.Model:
    """Waveform (batch, samples) -> dB STFT (batch, ceil(samples / hop_length), n_fft // 2 + 1), float32."""
    for key in ("trainable_filterbank", "deltas", "frequency_encoding"):
        if getattr(frontend, key):
            raise ConfigError(f"frontend.{key}: ds_cnn1d works on the raw STFT (no mel axis); set it false")
    f32 = {"dtype": FRONTEND_DTYPE}
    waveform = keras.Input((input_samples,), name="waveform", dtype=FRONTEND_DTYPE)
    x = keras.layers.Reshape((-1, 1), name="add_channel", **f32)(waveform)
    x = kapre.STFT(n_fft=n_fft, hop_length=hop_length, pad_end=True, input_data_format="channels_last",
                   output_data_format="channels_last", name="stft", **f32)(x)
    x = SpectralPower(frontend.power, name="spectral_power", **f32)(x)
    x = ClipDecibel(top_db=frontend.top_db, power=frontend.power, name="decibel", **f32)(x)
    if frontend.time_masks or frontend.freq_masks:
        x = kapre.SpecAugment(freq_mask_param=frontend.freq_mask_width, time_mask_param=frontend.time_mask_width,
                              n_freq_masks=frontend.freq_masks, n_time_masks=frontend.time_masks,
                              mask_value=-frontend.top_db, data_format="channels_last", name="spec_augment", **f32)(x)
    x = keras.layers.Reshape((-1, n_fft // 2 + 1), name="bins_as_channels", **f32)(x)
    return keras.Model(waveform, x, name=name)


def _preset(**options) -> ModelConfig:
    return ModelConfig(name="ds_cnn1d", use_global_features=False, use_length=False, options=options)


PRESETS = {"max": _preset(), "rnn": _preset(aggregation="rnn")}


@register("ds_cnn1d", presets=PRESETS, options=DsCnn1dOptions)
def build_ds_cnn1d(config: ModelConfig, frontend: FrontendConfig, n_classes: int, sample_rate: int,
                   input_seconds: float | None = 5.0, multilabel: bool = True,
                   global_steps: int = 128) -> keras.Model:
    """Build ds_cnn1d; inputs and output as cnn9 (``input_seconds=None``: any waveform length)."""
    options = parse_options(config, "ds_cnn1d")
    samples = None if input_seconds is None else int(round(input_seconds * sample_rate))
    waveform = keras.Input((samples,), name="waveform", dtype="float32")
    spectrum = build_stft_frontend(frontend, options.n_fft, options.hop_length, samples)(waveform)
    return assemble(waveform, spectrum, config, options, n_classes, multilabel, global_steps,
                    name=f"ds_cnn1d_{options.aggregation}")
