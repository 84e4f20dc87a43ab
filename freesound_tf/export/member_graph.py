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

Side inputs (global statistics, length) come from the untrimmed samples sent, see
:mod:`freesound_tf.export.features_layer`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from freesound_tf.config import Recipe
from freesound_tf.data.pipeline import crop_positions
from freesound_tf.export.features_layer import global_features_tf, length_feature_tf
from freesound_tf.inference import GMEAN_EPS, model_inputs, softmax_output, tta_positions

FULL_MIN_SECONDS = 1.0  # full_length_dataset's min_seconds, which predict_full_length keeps


def crop_offset(n: int, crop_len: int, position: float) -> int:
    """``crop_clip``'s offset for a clip of ``n`` samples (the position is float32 there)."""
    span = abs(n - crop_len)
    return min(int(float(np.float32(position)) * (span + 1)), span)


def crop_tf(waveform: tf.Tensor, crop_len: int, position: float) -> tf.Tensor:
    """(batch, crop_len) window of every row at ``position`` in [0, 1], as ``crop_clip`` places it."""
    if waveform.shape[1] is not None:  # fixed-length export: the offset is a constant
        n = waveform.shape[1]
        offset = crop_offset(n, crop_len, position)
        if n >= crop_len:
            return waveform[:, offset:offset + crop_len]
        return tf.pad(waveform, [[0, 0], [offset, crop_len - n - offset]])
    n = tf.shape(waveform)[1]
    span = tf.abs(n - crop_len)
    # The same float64 product as crop_offset, so the truncation matches.
    scaled = float(np.float32(position)) * tf.cast(span + 1, tf.float64)
    offset = tf.minimum(tf.cast(tf.math.floor(scaled), tf.int32), span)
    short = n < crop_len
    # A short clip is padded on both sides to crop_len; a long one is sliced at the offset.
    left = tf.where(short, offset, 0)
    right = tf.maximum(crop_len - n - left, 0)
    padded = tf.pad(waveform, [[0, 0], [left, right]])
    start = tf.where(short, 0, offset)
    return padded[:, start:start + crop_len]


def pad_to_min_tf(waveform: tf.Tensor, min_len: int) -> tf.Tensor:
    """Zero-pads the end of every row to at least ``min_len`` samples."""
    n = waveform.shape[1]
    missing = max(min_len - n, 0) if n is not None else tf.maximum(min_len - tf.shape(waveform)[1], 0)
    return tf.pad(waveform, [[0, 0], [0, missing]])


def combine_tta_tf(scores: tf.Tensor, how: str, softmax: bool) -> tf.Tensor:
    """(n_tta, batch, C) -> (batch, C), the ops of :func:`freesound_tf.inference.combine_tta`."""
    if scores.shape[0] == 1:
        return scores[0]
    if how == "mean":
        return tf.reduce_mean(scores, axis=0)
    combined = tf.exp(tf.reduce_mean(tf.math.log(tf.maximum(scores, GMEAN_EPS)), axis=0))
    return combined / tf.reduce_sum(combined, axis=-1, keepdims=True) if softmax else combined


@dataclass
class MemberGraph:
    """A run's fold models plus what its recipe says about their inputs and TTA."""

    name: str
    recipe: Recipe
    models: Sequence[keras.Model]

    @property
    def inputs(self) -> tuple[str, ...]:
        return model_inputs(self.recipe)

    def side_inputs(self, waveform: tf.Tensor) -> dict[str, tf.Tensor]:
        audio = self.recipe.audio
        out = {}
        if "global_features" in self.inputs:
            out["global_features"] = global_features_tf(waveform, audio.global_steps)
        if "length" in self.inputs:
            out["length"] = length_feature_tf(waveform, audio.sample_rate, audio.length_norm_seconds)
        return out

    def windows(self, waveform: tf.Tensor) -> list[list[tf.Tensor]]:
        """The TTA windows of every clip, grouped by window length (one model call per group)."""
        sr = self.recipe.audio.sample_rate
        train, pipeline = self.recipe.train, self.recipe.pipeline
        if train.tta == "full":
            return [[pad_to_min_tf(waveform, int(round(FULL_MIN_SECONDS * sr)))]]
        if train.tta == "multi_length":
            return [[crop_tf(waveform, int(round(seconds * sr)), float(p))
                     for p in tta_positions(train.tta_random_crops, pipeline.seed, k)]
                    for k, seconds in enumerate(train.tta_lengths)]
        crop_len = int(round(pipeline.crop_seconds * sr))
        return [[crop_tf(waveform, crop_len, p) for p in crop_positions(pipeline.eval_crops)]]

    def scores(self, waveform: tf.Tensor) -> tf.Tensor:
        """(batch, classes) scores: TTA per fold model, then the mean over fold models."""
        side = self.side_inputs(waveform)
        groups = self.windows(waveform)
        softmax = softmax_output(self.models[0])
        per_fold = []
        for model in self.models:
            per_crop = []
            for group in groups:
                # All crops of a length, of all clips, go through the model as one batch, crop-major.
                batch = {"waveform": tf.concat(group, axis=0),
                         **{k: tf.concat([v] * len(group), axis=0) for k, v in side.items()}}
                out = model({k: batch[k] for k in self.inputs}, training=False)
                per_crop.append(tf.reshape(out, (len(group), tf.shape(waveform)[0], -1)))
            per_fold.append(combine_tta_tf(tf.concat(per_crop, axis=0), self.recipe.train.tta_combine, softmax))
        return tf.add_n(per_fold) / len(per_fold)
