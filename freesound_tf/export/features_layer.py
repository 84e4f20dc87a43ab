"""In-graph twins of :mod:`freesound_tf.data.features`: the 128 x 12 global statistics and the length.

A served model receives raw audio only, so the side inputs the cache precomputes in numpy are
recomputed here with TensorFlow ops, following the definition in
:mod:`freesound_tf.data.features` step by step (cyclic repeat of short clips, float64 window
bounds, population std, numpy's linear percentiles). All windows of a batch are gathered at
once into a (batch, steps, widest window) tensor, each row with its own window plan when clips
differ in length; samples past a window's own end are masked out of the sums and sorted behind
its values as +inf, so one ``tf.sort`` serves every percentile of every window.

Clips of different lengths share a padded batch when each row's length is given
(``lengths``); without it every row is a whole clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from freesound_tf.data.features import GLOBAL_FEATURE_NAMES, PERCENTILES, length_feature, window_bounds


def window_bounds_tf(n: tf.Tensor, steps: int) -> tuple[tf.Tensor, tf.Tensor]:
    """int32 (start, end) of the ``steps`` windows over ``n`` samples, bit-equal to ``window_bounds``.

    The same float64 operations in the same order as numpy, so truncation lands identically.
    """
    n64 = tf.cast(n, tf.float64)
    stride = n64 / steps
    centres = tf.range(steps, dtype=tf.float64) * stride
    # floor instead of numpy's trunc: they differ only on negative values (step 0), which the maximum zeroes.
    start = tf.maximum(tf.constant(0.0, tf.float64), tf.math.floor(centres - stride / 2))
    end = tf.minimum(n64, tf.math.floor(centres + 1.5 * stride))
    return tf.cast(start, tf.int32), tf.cast(end, tf.int32)


@dataclass
class WindowPlan:
    """Where each window's samples and order statistics are: (steps, width) and (steps, 9) tensors."""

    index: tf.Tensor  # sample index per window slot, clipped into the clip
    valid: tf.Tensor  # slot lies inside its window
    count: tf.Tensor  # (steps,) float32 window lengths
    below: tf.Tensor  # order statistic under each percentile position
    above: tf.Tensor
    weight: tf.Tensor  # float32 interpolation weight towards ``above``


def static_plan(n: int, steps: int) -> WindowPlan:
    """The plan for a length known when the graph is built: numpy constants (no float64 in the graph)."""
    start, end = window_bounds(n, steps)
    lengths = end - start
    offsets = np.arange(lengths.max())
    position = np.asarray(PERCENTILES) / 100.0 * (lengths[:, None] - 1)  # as _linear_percentiles
    below = np.floor(position).astype(np.int64)
    return WindowPlan(
        index=tf.constant(np.minimum(start[:, None] + offsets, n - 1), tf.int32),
        valid=tf.constant(offsets[None, :] < lengths[:, None]),
        count=tf.constant(lengths, tf.float32),
        below=tf.constant(below, tf.int32),
        above=tf.constant(np.minimum(below + 1, lengths[:, None] - 1), tf.int32),
        weight=tf.constant(position - below, tf.float32))


def dynamic_plan(n: tf.Tensor, steps: int) -> WindowPlan:
    """The same plan computed in the graph for lengths known only at run time: ``n`` of shape (batch,)
    gives (batch, steps, width) / (batch, steps) / (batch, steps, 9) tensors, one plan per row."""
    start, end = window_bounds_tf(n[:, None], steps)  # (batch, steps)
    lengths = end - start
    offsets = tf.range(tf.reduce_max(lengths))
    position = tf.constant(np.asarray(PERCENTILES) / 100.0) * tf.cast(lengths - 1, tf.float64)[..., None]
    below = tf.math.floor(position)
    below_index = tf.cast(below, tf.int32)
    return WindowPlan(
        index=tf.minimum(start[..., None] + offsets, n[:, None, None] - 1),
        valid=offsets < lengths[..., None],
        count=tf.cast(lengths, tf.float32),
        below=below_index,
        above=tf.minimum(below_index + 1, lengths[..., None] - 1),
        weight=tf.cast(position - below, tf.float32))


def global_features_tf(waveform: tf.Tensor, steps: int = 128, lengths: tf.Tensor | None = None) -> tf.Tensor:
    """(batch, steps, 12) float32 global statistics of each row of ``waveform`` (batch, samples).

    ``lengths`` (batch,) int32: row ``b`` is the clip ``waveform[b, :lengths[b]]`` (a padded batch);
    None: every row is a whole clip. A static sample count without ``lengths`` (fixed-length
    exports) turns all window bookkeeping into constants.
    """
    y = tf.convert_to_tensor(waveform, tf.float32)
    static_n = y.shape[1]
    if static_n is not None and lengths is None:
        if static_n == 0:
            raise ValueError("global_features_tf: empty waveform (0 samples)")
        # Short clips repeat cyclically to `steps` samples (numpy's np.resize) so no window is empty.
        if static_n < steps:
            y = tf.gather(y, tf.constant(np.arange(steps) % static_n, tf.int32), axis=1)
        plan = static_plan(max(static_n, steps), steps)
        windows = tf.gather(y, plan.index, axis=1)  # (batch, steps, width)
        plan = WindowPlan(plan.index, plan.valid[None], plan.count[None], plan.below[None],
                          plan.above[None], plan.weight[None])
    else:
        n = tf.fill(tf.shape(y)[:1], tf.shape(y)[1]) if lengths is None else tf.cast(lengths, tf.int32)
        tf.debugging.assert_positive(n, message="waveform: empty clip (0 samples); send at least one sample")
        # Windows over each row cyclically extended to `steps` samples (np.resize of short clips).
        plan = dynamic_plan(tf.maximum(n, steps), steps)
        windows = tf.gather(y, plan.index % n[:, None, None], batch_dims=1)  # (batch, steps, width)

    mask = tf.cast(plan.valid, tf.float32)
    mean = tf.reduce_sum(windows * mask, axis=-1) / plan.count
    centred = (windows - mean[..., None]) * mask
    std = tf.sqrt(tf.reduce_sum(centred * centred, axis=-1) / plan.count)

    ordered = tf.sort(tf.where(plan.valid, windows, np.inf), axis=-1)
    below = tf.broadcast_to(plan.below, tf.concat([tf.shape(ordered)[:2], [len(PERCENTILES)]], 0))
    above = tf.broadcast_to(plan.above, tf.shape(below))
    low = tf.gather(ordered, below, batch_dims=2)  # (batch, steps, 9)
    high = tf.gather(ordered, above, batch_dims=2)
    percentiles = low + (high - low) * plan.weight
    value_range = percentiles[..., -1] - percentiles[..., 0]  # p100 - p0 == max - min
    stats = tf.concat([mean[..., None], std[..., None], value_range[..., None], percentiles], axis=-1)
    return tf.reshape(stats, (-1, steps, len(GLOBAL_FEATURE_NAMES)))


def length_feature_tf(waveform: tf.Tensor, sample_rate: int, norm_seconds: float) -> tf.Tensor:
    """(batch, 1) clip length / (norm_seconds * sample_rate), as ``length_feature`` but on the samples sent.

    The library computes it on the trimmed clip; a client that trims first matches it exactly.
    """
    if waveform.shape[1] is not None:
        value = tf.constant(length_feature(waveform.shape[1], sample_rate, norm_seconds), tf.float32)
        return tf.fill((tf.shape(waveform)[0], 1), value)
    return length_feature_rows(tf.fill(tf.shape(waveform)[:1], tf.shape(waveform)[1]), sample_rate, norm_seconds)


def length_feature_rows(lengths: tf.Tensor, sample_rate: int, norm_seconds: float) -> tf.Tensor:
    """(batch, 1) length feature of clips of ``lengths`` (batch,) samples, as ``length_feature``."""
    samples = tf.cast(lengths, tf.float64)[:, None]
    return tf.cast(samples / (float(norm_seconds) * sample_rate), tf.float32)


@keras.saving.register_keras_serializable(package="freesound_tf")
class GlobalFeatures(keras.layers.Layer):
    """Waveform (batch, samples) -> (batch, steps, 12) global statistics (TensorFlow backend only)."""

    def __init__(self, steps: int = 128, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps = int(steps)

    def call(self, waveform):
        return global_features_tf(waveform, self.steps)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.steps, len(GLOBAL_FEATURE_NAMES))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "steps": self.steps}


@keras.saving.register_keras_serializable(package="freesound_tf")
class LengthFeature(keras.layers.Layer):
    """Waveform (batch, samples) -> (batch, 1) length feature of the samples sent (TensorFlow backend only)."""

    def __init__(self, sample_rate: int, norm_seconds: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sample_rate, self.norm_seconds = int(sample_rate), float(norm_seconds)

    def call(self, waveform):
        return length_feature_tf(waveform, self.sample_rate, self.norm_seconds)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "sample_rate": self.sample_rate, "norm_seconds": self.norm_seconds}
