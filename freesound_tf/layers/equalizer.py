"""Random equalisation of the log-mel: a different microphone or room for every training clip.

Recordings of one sound differ mostly by a smooth spectral colouring (microphone, distance, room);
a model that learns the colouring of its few training recordings tags new ones badly. Adding a
random smooth gain curve over the mel bins while training hides that cue.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

ORDER = 3  # cosine terms of the gain curve: tilts and one or two broad bumps, no narrow peaks


@keras.saving.register_keras_serializable(package="freesound_tf")
class RandomEqualizer(keras.layers.Layer):
    """(b, time, mel, channels) in dB, training only: each clip gets a gain curve over the mel axis,
    ``sum_k c_k cos(pi k (m + 0.5) / n_mels)`` for k = 1..3 with ``c_k`` uniform in ``±max_db / 3``
    (so within ``±max_db``), constant over time; the result is floored at ``floor`` (the frontend's
    silence level). Identity at inference."""

    def __init__(self, max_db: float = 0.0, floor: float = -80.0, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if max_db < 0:
            raise ValueError(f"RandomEqualizer: max_db must be >= 0, got {max_db}")
        self.max_db, self.floor, self.seed = float(max_db), float(floor), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.max_db == 0.0:
            return x
        n_mels = x.shape[2]
        k = np.arange(1, ORDER + 1)[:, None]
        basis = np.cos(np.pi * k * (np.arange(n_mels)[None, :] + 0.5) / n_mels).astype("float32")  # (order, mel)
        bound = self.max_db / ORDER
        coefficients = keras.random.uniform((ops.shape(x)[0], ORDER), -bound, bound, seed=self.seed_generator)
        gain = ops.matmul(coefficients, ops.convert_to_tensor(basis))  # (b, mel)
        return ops.maximum(x + gain[:, None, :, None], self.floor)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_db": self.max_db, "floor": self.floor, "seed": self.seed}
