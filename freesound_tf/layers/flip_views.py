"""Seed 001's flipped views as extra classes, in the graph.

Seed 001 trained on every spectrogram in four views — as is, reversed in time, reversed along the mel
axis, both — and gave each view its own copy of the classes (320 outputs for 80 classes: "Bark",
"Bark_flip", "Bark_vert", "Bark_flip_vert"). A clip in view v is positive only for the classes of
block v; the other three blocks are negatives. Prediction scores each clip in all four views, keeps
block v of view v's sigmoid scores and averages the four.

Here the model does both itself, so the pipeline, the loss inputs, OOF/test scores and exports keep the
original classes:

* :class:`FlipViews` (log-mel -> flipped log-mel, view index): in training each clip gets a random
  view; at inference every clip is stacked in all four views along the batch (view-major).
* :class:`FlipScores` (scores of 4 x C columns, view index): in training the columns are rotated so
  that the clip's own view comes first, hence the target is the clip's labels followed by 3 x C zeros
  (:class:`freesound_tf.losses.AdaptedLoss` pads them; a sum or mean over columns does not depend on
  their order, so this is the seed's loss). At inference it returns the mean over the four views of
  each view's own block: (batch, C).
"""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

VIEWS = 4  # 0: as is, 1: time reversed, 2: mel reversed, 3: both


def _flip(x, time, mel):
    """(b, t, m, c) with the time / mel axis of the clips where ``time`` / ``mel`` (b,) is true reversed."""
    column = (-1, 1, 1, 1)
    x = ops.where(ops.reshape(time, column), ops.flip(x, axis=1), x)
    return ops.where(ops.reshape(mel, column), ops.flip(x, axis=2), x)


@keras.saving.register_keras_serializable(package="freesound_tf")
class FlipViews(keras.layers.Layer):
    """(b, t, m, c) -> (views of the clips, view index as float32). Training: one random view per clip,
    (b, ...). Inference: all four views, view-major: (4b, ...), views [0]*b + [1]*b + [2]*b + [3]*b."""

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        batch = ops.shape(x)[0]
        if training:
            view = keras.random.randint((batch,), 0, VIEWS, seed=self.seed_generator)
        else:
            view = ops.repeat(ops.arange(VIEWS), batch)
            x = ops.concatenate([x] * VIEWS, axis=0)
        flipped = _flip(x, ops.equal(view % 2, 1), ops.greater_equal(view, 2))
        return flipped, ops.cast(view, "float32")

    def compute_output_shape(self, input_shape):
        return input_shape, (input_shape[0],)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="freesound_tf")
class FlipScores(keras.layers.Layer):
    """[(n, 4C) scores, (n,) view] -> training: (b, 4C) with the clip's view block first;
    inference (n = 4b, view-major): (b, C), the mean of block v of view v's scores."""

    def call(self, inputs, training=None):
        scores, view = inputs
        classes = scores.shape[-1] // VIEWS
        blocks = ops.reshape(scores, (-1, VIEWS, classes))
        if training:
            order = (ops.arange(VIEWS)[None, :] + ops.cast(view, "int32")[:, None]) % VIEWS  # (b, 4)
            rotated = ops.take_along_axis(blocks, ops.expand_dims(order, -1), axis=1)
            return ops.reshape(rotated, (-1, VIEWS * classes))
        per_view = ops.reshape(blocks, (VIEWS, -1, VIEWS, classes))  # (view, clip, block, class)
        own = ops.stack([per_view[v, :, v, :] for v in range(VIEWS)])
        return ops.mean(own, axis=0)

    def compute_output_shape(self, input_shape):
        scores_shape = input_shape[0]
        return (None, scores_shape[-1] // VIEWS)


def has_flip_views(model: keras.Model) -> bool:
    """Whether ``model`` scores flipped views as extra classes (its training output is 4x wider)."""
    return any(isinstance(layer, FlipScores) for layer in model.layers)
