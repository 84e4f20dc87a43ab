"""One ensemble member as TensorFlow ops: the library's test-time augmentation and fold averaging.

Mirrors :func:`freesound_tf.inference.predict_clips` for one clip batch so an exported model
scores raw audio exactly as the library scores cached clips:

* ``tta = "crops"``: ``pipeline.eval_crops`` fixed crops at :func:`crop_positions`, placed like
  :func:`freesound_tf.data.pipeline.crop_clip` (a short clip is zero-padded at the same relative
  offset);
* ``tta = "full"``: the whole clip, zero-padded to ``FULL_MIN_SECONDS`` when shorter (as
  :func:`freesound_tf.data.pipeline.full_length_dataset` does);
* ``tta = "multi_length"``: per length, the crops at the library's :func:`tta_positions` (constants
  drawn from the recipe's seed, so the graph is deterministic), placed as above;

the crops' scores combined as :func:`freesound_tf.inference.combine_tta` does (``train.tta_combine``).

Each row of a batch is one clip: its first ``lengths[b]`` samples (all of them without lengths).
As the cache does, the graph trims each clip's leading and trailing silence (``audio.trim_top_db``,
:mod:`freesound_tf.export.trim`), crops the trimmed clip, computes the length feature on it and the
global statistics on the untrimmed one. Fixed-length exports (TFLite) skip the trim and per-row
lengths so every offset is a constant.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from freesound_tf.config import Recipe
from freesound_tf.data.pipeline import crop_positions
from freesound_tf.export.features_layer import global_features_tf, length_feature_rows, length_feature_tf
from freesound_tf.export.trim import trim_bounds_tf
from freesound_tf.inference import GMEAN_EPS, model_inputs, softmax_output, tta_positions

FULL_MIN_SECONDS = 1.0  # full_length_dataset's min_seconds, which predict_full_length keeps


def crop_offset(n: int, crop_len: int, position: float) -> int:
    """``crop_clip``'s offset for a clip of ``n`` samples (the position is float32 there)."""
    span = abs(n - crop_len)
    return min(int(float(np.float32(position)) * (span + 1)), span)


def crop_tf(waveform: tf.Tensor, crop_len: int, position: float) -> tf.Tensor:
    """(batch, crop_len) window of every row of a fixed-length batch at ``position`` in [0, 1], as
    ``crop_clip`` places it: the offset is a constant."""
    n = waveform.shape[1]
    offset = crop_offset(n, crop_len, position)
    if n >= crop_len:
        return waveform[:, offset:offset + crop_len]
    return tf.pad(waveform, [[0, 0], [offset, crop_len - n - offset]])


def window_rows_tf(waveform: tf.Tensor, starts: tf.Tensor, lengths: tf.Tensor, width: int | tf.Tensor,
                   position: float | None) -> tf.Tensor:
    """(batch, width) windows of the clips ``waveform[b, starts[b]:starts[b] + lengths[b]]``.

    ``position`` in [0, 1] places a ``width`` window as ``crop_clip`` does (a longer clip sliced at
    its offset, a shorter one zero-padded around it); None takes each clip from its start, zero-padded.
    """
    if position is None:
        shift = tf.zeros_like(lengths)
    else:
        span = tf.abs(lengths - width)
        # The same float64 product as crop_offset, so the truncation matches.
        scaled = float(np.float32(position)) * tf.cast(span + 1, tf.float64)
        offset = tf.minimum(tf.cast(tf.math.floor(scaled), tf.int32), span)
        shift = tf.where(lengths < width, -offset, offset)
    source = tf.range(width)[None, :] + shift[:, None]  # sample of the clip at each window slot
    inside = (source >= 0) & (source < lengths[:, None])
    index = tf.clip_by_value(source, 0, tf.maximum(lengths - 1, 0)[:, None]) + starts[:, None]
    return tf.where(inside, tf.gather(waveform, index, batch_dims=1), 0.0)


def pad_to_min_tf(waveform: tf.Tensor, min_len: int) -> tf.Tensor:
    """Zero-pads the end of every row of a fixed-length batch to at least ``min_len`` samples."""
    return tf.pad(waveform, [[0, 0], [0, max(min_len - waveform.shape[1], 0)]])


def combine_tta_tf(scores: tf.Tensor, how: str, softmax: bool) -> tf.Tensor:
    """(n_tta, batch, C) -> (batch, C), the ops of :func:`freesound_tf.inference.combine_tta`."""
    if scores.shape[0] == 1:
        return scores[0]
    if how == "mean":
        return tf.reduce_mean(scores, axis=0)
    combined = tf.exp(tf.reduce_mean(tf.math.log(tf.maximum(scores, GMEAN_EPS)), axis=0))
    return combined / tf.reduce_sum(combined, axis=-1, keepdims=True) if softmax else combined


@dataclass
class Clips:
    """A batch of clips as the member graph sees it: samples, the trimmed part of each row, side inputs."""

    waveform: tf.Tensor  # (batch, samples) float32
    starts: tf.Tensor | None  # (batch,) int32 first sample of each trimmed clip; None: static full rows
    lengths: tf.Tensor | None  # (batch,) int32 samples of each trimmed clip
    side: dict[str, tf.Tensor]


@dataclass
class MemberGraph:
    """A run's fold models plus what its recipe says about their inputs, trimming and TTA."""

    name: str
    recipe: Recipe
    models: Sequence[keras.Model]
    trim: bool = True

    @property
    def inputs(self) -> tuple[str, ...]:
        return model_inputs(self.recipe)

    def clips(self, waveform: tf.Tensor, lengths: tf.Tensor | None) -> Clips:
        """Trim bounds and side inputs of every row (static constants for a fixed-length batch)."""
        audio = self.recipe.audio
        if waveform.shape[1] is not None and lengths is None and not self.trim:
            side = {}
            if "global_features" in self.inputs:
                side["global_features"] = global_features_tf(waveform, audio.global_steps)
            if "length" in self.inputs:
                side["length"] = length_feature_tf(waveform, audio.sample_rate, audio.length_norm_seconds)
            return Clips(waveform, None, None, side)
        full = tf.fill(tf.shape(waveform)[:1], tf.shape(waveform)[1]) if lengths is None else lengths
        if self.trim and audio.trim_top_db > 0:
            starts, ends = trim_bounds_tf(waveform, full, audio.trim_top_db)
        else:
            starts, ends = tf.zeros_like(full), full
        side = {}
        if "global_features" in self.inputs:  # of the untrimmed clip, as the cache computes them
            side["global_features"] = global_features_tf(waveform, audio.global_steps, lengths=full)
        if "length" in self.inputs:
            side["length"] = length_feature_rows(ends - starts, audio.sample_rate, audio.length_norm_seconds)
        return Clips(waveform, starts, ends - starts, side)

    def windows(self, clips: Clips) -> list[list[tf.Tensor]]:
        """The TTA windows of every clip, grouped by window length (one model call per group)."""
        sr = self.recipe.audio.sample_rate
        train, pipeline = self.recipe.train, self.recipe.pipeline
        if train.tta == "full":
            return [[_full_clip(clips, int(round(FULL_MIN_SECONDS * sr)))]]
        if train.tta == "multi_length":
            return [[_crop(clips, int(round(seconds * sr)), float(p))
                     for p in tta_positions(train.tta_random_crops, pipeline.seed, k)]
                    for k, seconds in enumerate(train.tta_lengths)]
        crop_len = int(round(pipeline.crop_seconds * sr))
        return [[_crop(clips, crop_len, p) for p in crop_positions(pipeline.eval_crops)]]

    def scores(self, waveform: tf.Tensor, lengths: tf.Tensor | None = None) -> tf.Tensor:
        """(batch, classes) scores: TTA per fold model, then the mean over fold models."""
        clips = self.clips(waveform, lengths)
        groups = self.windows(clips)
        softmax = softmax_output(self.models[0])
        per_fold = []
        for model in self.models:
            per_crop = []
            for group in groups:
                # All crops of a length, of all clips, go through the model as one batch, crop-major.
                batch = {"waveform": tf.concat(group, axis=0),
                         **{k: tf.concat([v] * len(group), axis=0) for k, v in clips.side.items()}}
                out = model({k: batch[k] for k in self.inputs}, training=False)
                per_crop.append(tf.reshape(out, (len(group), tf.shape(waveform)[0], -1)))
            per_fold.append(combine_tta_tf(tf.concat(per_crop, axis=0), self.recipe.train.tta_combine, softmax))
        return tf.add_n(per_fold) / len(per_fold)


def _crop(clips: Clips, width: int, position: float) -> tf.Tensor:
    if clips.starts is None:  # fixed-length batch: a constant offset
        return crop_tf(clips.waveform, width, position)
    return window_rows_tf(clips.waveform, clips.starts, clips.lengths, width, position)


def _full_clip(clips: Clips, min_len: int) -> tf.Tensor:
    """Whole clips from their start, zero-padded to the longest one (at least ``min_len``), as the
    library's length-bucketed batches pad them."""
    if clips.starts is None:
        return pad_to_min_tf(clips.waveform, min_len)
    width = tf.maximum(tf.reduce_max(clips.lengths), min_len)
    return window_rows_tf(clips.waveform, clips.starts, clips.lengths, width, None)
