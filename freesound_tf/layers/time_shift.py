"""Seed 002's image augmentations on the log-mel: random shift along time and time reversal."""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="freesound_tf")
class RandomTimeShiftFlip(keras.layers.Layer):
    """(b, time, mel, channels), training only: each clip is shifted along time by a whole number of frames
    drawn uniformly within ``max_shift`` x frames either way, the edge frames repeated into the gap (Keras'
    ImageDataGenerator ``width_shift_range`` with ``fill_mode="nearest"``, rounded to whole frames), then
    reversed in time with probability ``flip`` (its ``horizontal_flip``). Identity at inference."""

    def __init__(self, max_shift: float = 0.0, flip: float = 0.0, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= max_shift <= 1.0 or not 0.0 <= flip <= 1.0:
            raise ValueError(f"RandomTimeShiftFlip: max_shift and flip must be in [0, 1], got {max_shift}, {flip}")
        self.max_shift, self.flip, self.seed = float(max_shift), float(flip), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or (self.max_shift == 0.0 and self.flip == 0.0):
            return x
        batch, frames = ops.shape(x)[0], ops.shape(x)[1]
        span = ops.cast(frames, "float32")
        shift = ops.round(keras.random.uniform((batch, 1), -self.max_shift, self.max_shift,
                                               seed=self.seed_generator) * span)
        t = ops.arange(frames, dtype="float32")[None, :]
        flip = keras.random.uniform((batch, 1), seed=self.seed_generator) < self.flip
        # Shift, then flip: output frame t reads shifted frame t (or T - 1 - t), i.e. input frame that - shift.
        source = ops.where(flip, span - 1.0 - t, t) - shift
        source = ops.cast(ops.clip(source, 0.0, span - 1.0), "int32")
        return tf.gather(x, source, axis=1, batch_dims=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_shift": self.max_shift, "flip": self.flip, "seed": self.seed}
