"""Per-clip spectral and temporal summary statistics (seed 002's hand-made features), computed in-graph.

``ClipSummaryStats`` maps a waveform and its log-mel to one vector per clip, in this order:

* per mel band, over time, on the dB log-mel (channel 0), 7 blocks of ``n_mels`` values each:
  mean, std, min, max, skewness, excess kurtosis, mean |frame-to-frame change|;
* 5 frame features, each as mean then std over frames (10 values):
  frame energy (dB of the mean square of a waveform frame), zero-crossing rate (share of adjacent
  sample pairs of a waveform frame whose sign differs, zero counting as positive), and from the mel
  power spectrum (10 ** (dB / 10)) the spectral centroid and the 85 % roll-off (both as mel band
  index / (n_mels - 1)) and the spectral flatness (geometric over arithmetic mean).

Waveform frames are ``frame_length`` samples every ``hop_length``, the end zero-padded
(ceil(samples / hop) frames, as the STFT). Moments use the population (biased) estimators; skewness
and kurtosis are 0 for a band whose std is below ``MIN_STD`` dB. Statistics are fixed features: no
gradient flows back through them.
"""
from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf
from keras import ops

BAND_STATS = ("mean", "std", "min", "max", "skew", "kurtosis", "mean_abs_delta")
FRAME_FEATURES = ("energy_db", "zero_crossing_rate", "centroid", "rolloff", "flatness")
ROLLOFF = 0.85
MIN_STD = 1e-3
_EPS = 1e-10


def summary_stats_size(n_mels: int) -> int:
    """Length of the statistics vector for ``n_mels`` mel bands."""
    return len(BAND_STATS) * n_mels + 2 * len(FRAME_FEATURES)


def _mean_std(x, axis: int):
    mean = ops.mean(x, axis=axis)
    return mean, ops.sqrt(ops.mean(ops.square(x - ops.expand_dims(mean, axis)), axis=axis))


@keras.saving.register_keras_serializable(package="freesound_tf")
class ClipSummaryStats(keras.layers.Layer):
    """[waveform (b, samples), log-mel dB (b, frames, n_mels, channels)] -> (b, 7 * n_mels + 10)."""

    def __init__(self, frame_length: int, hop_length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 < hop_length <= frame_length:
            raise ValueError(f"ClipSummaryStats: need 0 < hop_length <= frame_length, got {hop_length}, {frame_length}")
        self.frame_length = int(frame_length)
        self.hop_length = int(hop_length)

    def call(self, inputs):
        waveform, logmel = (ops.stop_gradient(ops.cast(t, "float32")) for t in inputs)
        db = logmel[..., 0]  # (b, t, m)
        return ops.concatenate([self._band_stats(db), self._frame_stats(waveform, db)], axis=-1)

    def _band_stats(self, db):
        mean, std = _mean_std(db, axis=1)
        centred = db - ops.expand_dims(mean, 1)
        safe = ops.maximum(std, MIN_STD)
        varies = std >= MIN_STD
        skew = ops.where(varies, ops.mean(centred ** 3, axis=1) / safe ** 3, 0.0)
        kurtosis = ops.where(varies, ops.mean(centred ** 4, axis=1) / safe ** 4 - 3.0, 0.0)
        # A one-frame clip has no change: dividing by at least 1 makes its mean change 0.
        delta = ops.abs(db[:, 1:] - db[:, :-1])
        mean_delta = ops.sum(delta, axis=1) / ops.cast(ops.maximum(ops.shape(db)[1] - 1, 1), "float32")
        return ops.concatenate([mean, std, ops.min(db, axis=1), ops.max(db, axis=1), skew, kurtosis, mean_delta],
                               axis=-1)

    def _frame_stats(self, waveform, db):
        frames = tf.signal.frame(waveform, self.frame_length, self.hop_length, pad_end=True)  # (b, f, L)
        energy = 10.0 * ops.log10(ops.mean(ops.square(frames), axis=-1) + _EPS)
        positive = frames >= 0.0
        zcr = ops.mean(ops.cast(ops.not_equal(positive[..., 1:], positive[..., :-1]), "float32"), axis=-1)

        n_mels = db.shape[-1]
        power = ops.power(10.0, db / 10.0)
        total = ops.sum(power, axis=-1)
        bands = ops.arange(n_mels, dtype="float32") / max(n_mels - 1, 1)
        centroid = ops.sum(power * bands, axis=-1) / total
        below = ops.cumsum(power, axis=-1) < ROLLOFF * ops.expand_dims(total, -1)
        rolloff = ops.sum(ops.cast(below, "float32"), axis=-1) / max(n_mels - 1, 1)
        log_geo_mean = ops.mean(db, axis=-1) * (math.log(10.0) / 10.0)
        flatness = ops.exp(log_geo_mean) / (total / n_mels)
        stats = []
        for feature in (energy, zcr, centroid, rolloff, flatness):
            stats.extend(_mean_std(feature, axis=1))
        return ops.stack(stats, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], summary_stats_size(input_shape[1][2]))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "frame_length": self.frame_length, "hop_length": self.hop_length}
