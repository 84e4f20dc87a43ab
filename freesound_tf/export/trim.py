"""In-graph twin of :func:`freesound_tf.data.audio.trim_silence` (``librosa.effects.trim``).

librosa's rule, per clip: RMS of frames of 2048 samples every 512 (centred, zero-padded by 1024
on both sides, so ``1 + n // 512`` frames); a frame is non-silent when its level is above
``-top_db`` dB relative to the loudest frame (power floored at 1e-10); the clip keeps
``[first non-silent frame * 512, min(n, (last non-silent frame + 1) * 512))``. Frame energies are
summed here in float64 over 512-sample blocks (librosa sums float32), so a frame lying within
rounding error of the threshold could fall the other way; on real audio bounds are identical.
"""
from __future__ import annotations

import tensorflow as tf

from freesound_tf.data.audio import TRIM_FRAME_LENGTH as FRAME_LENGTH
from freesound_tf.data.audio import TRIM_HOP_LENGTH as HOP_LENGTH
from freesound_tf.data.audio import TRIM_POWER_FLOOR as POWER_FLOOR


def trim_bounds_tf(waveform: tf.Tensor, lengths: tf.Tensor, top_db: float) -> tuple[tf.Tensor, tf.Tensor]:
    """int32 (start, end), each (batch,), of the non-silent part of every row's first ``lengths`` samples."""
    lengths = tf.cast(lengths, tf.int32)
    blocks_per_frame = FRAME_LENGTH // HOP_LENGTH
    half = FRAME_LENGTH // 2
    width = tf.shape(waveform)[1]
    inside = tf.range(width)[None, :] < lengths[:, None]
    power = tf.square(tf.cast(tf.where(inside, waveform, 0.0), tf.float64))
    # Centre padding, then whole blocks of HOP_LENGTH samples (the end padding only adds zeros).
    padded_len = -(-(width + 2 * half) // HOP_LENGTH) * HOP_LENGTH
    power = tf.pad(power, [[0, 0], [half, padded_len - width - half]])
    blocks = tf.reduce_sum(tf.reshape(power, (tf.shape(power)[0], -1, HOP_LENGTH)), axis=-1)
    frames = 1 + width // HOP_LENGTH  # of the longest possible row
    frame_power = tf.add_n([blocks[:, k:k + frames] for k in range(blocks_per_frame)]) / FRAME_LENGTH
    valid = tf.range(frames)[None, :] < (1 + lengths // HOP_LENGTH)[:, None]
    level = tf.math.log(tf.maximum(frame_power, POWER_FLOOR))
    loudest = tf.reduce_max(tf.where(valid, level, -float("inf")), axis=1, keepdims=True)
    # 10 log10(p / ref) > -top_db, in natural logs.
    loud = valid & (level - loudest > -top_db * tf.math.log(tf.constant(10.0, tf.float64)) / 10.0)
    first = tf.argmax(tf.cast(loud, tf.int32), axis=1, output_type=tf.int32)
    last = frames - 1 - tf.argmax(tf.cast(tf.reverse(loud, [1]), tf.int32), axis=1, output_type=tf.int32)
    return first * HOP_LENGTH, tf.minimum(lengths, (last + 1) * HOP_LENGTH)
