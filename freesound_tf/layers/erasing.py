"""Random erasing (Zhong et al., 2017) on spectrograms, as seed 002 trains: one random rectangle per clip."""
from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

ASPECT_RATIO = 3.0  # time/mel aspect ratio of the rectangle is log-uniform in [1/3, 3]


@keras.saving.register_keras_serializable(package="freesound_tf")
class RandomErasing(keras.layers.Layer):
    """(b, time, mel, channels): with probability ``probability`` per clip, one rectangle of the
    time x mel plane is replaced on every channel by uniform noise between the clip's min and max.

    The rectangle covers a fraction of the plane drawn uniformly from [min_area, max_area] (never
    more than max_area: its sides are rounded down, at least one bin each) at a uniform position.
    Identity outside training, so inference and the exported graph never erase.
    """

    def __init__(self, probability: float = 0.5, max_area: float = 0.25, min_area: float = 0.02,
                 seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"RandomErasing: probability must be in [0, 1], got {probability}")
        if not 0.0 < max_area <= 1.0:
            raise ValueError(f"RandomErasing: max_area must be in (0, 1], got {max_area}")
        self.probability = float(probability)
        self.max_area = float(max_area)
        self.min_area = min(float(min_area), self.max_area)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _uniform(self, shape, low: float = 0.0, high: float = 1.0):
        return keras.random.uniform(shape, low, high, dtype="float32", seed=self.seed_generator)

    def call(self, x, training=None):
        if not training or self.probability == 0.0:
            return x
        shape = ops.shape(x)
        batch = shape[0]
        frames, mels = ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")
        area = self._uniform((batch,), self.min_area, self.max_area)
        ratio = ops.exp(self._uniform((batch,), -math.log(ASPECT_RATIO), math.log(ASPECT_RATIO)))
        height = ops.clip(ops.floor(ops.sqrt(area * ratio) * frames), 1.0, frames)
        width = ops.clip(ops.floor(ops.sqrt(area / ratio) * mels), 1.0, mels)
        top = ops.floor(self._uniform((batch,)) * (frames - height + 1.0))
        left = ops.floor(self._uniform((batch,)) * (mels - width + 1.0))
        erase = self._uniform((batch,)) < self.probability

        def column(v):  # (b,) -> (b, 1, 1)
            return ops.reshape(v, (-1, 1, 1))

        t = ops.reshape(ops.arange(shape[1], dtype="float32"), (1, -1, 1))
        m = ops.reshape(ops.arange(shape[2], dtype="float32"), (1, 1, -1))
        inside = ((t >= column(top)) & (t < column(top + height)) & (m >= column(left))
                  & (m < column(left + width)) & column(erase))
        axes = (1, 2, 3)
        low, high = ops.min(x, axis=axes, keepdims=True), ops.max(x, axis=axes, keepdims=True)
        noise = low + self._uniform(shape) * (high - low)
        return ops.where(ops.expand_dims(inside, -1), noise, x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "probability": self.probability, "max_area": self.max_area,
                "min_area": self.min_area, "seed": self.seed}
