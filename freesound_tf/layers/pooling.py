"""Axis-aware pooling on (batch, time, mel, channels) feature maps.

Time and mel have different meanings, so the ``avemax`` modes average along one axis and take
the maximum along the other (both 'same' padded, so any time length works). The names and
orders are seed 004's (its ``AveMaxPool``, ``ave_axis`` 1-3):

* ``avemax1``: average over time, then max over mel.
* ``avemax2``: average over mel, then max over time.
* ``avemax3``: max over mel, then average over time (avemax1's axes, the other order).
* ``max``: plain 2-D max pooling.
"""
from __future__ import annotations

from keras import layers

POOLING_MODES = ("avemax1", "avemax2", "avemax3", "max")


def axis_pool(x, mode: str, pool_size: int, stride: int, name: str):
    """Downsample time and mel by ``stride`` with window ``pool_size`` according to ``mode``."""
    if mode == "max":
        return layers.MaxPooling2D(pool_size, strides=stride, padding="same", name=f"{name}_max")(x)
    if mode == "avemax1":
        x = layers.AveragePooling2D((pool_size, 1), strides=(stride, 1), padding="same", name=f"{name}_avg_time")(x)
        return layers.MaxPooling2D((1, pool_size), strides=(1, stride), padding="same", name=f"{name}_max_mel")(x)
    if mode == "avemax2":
        x = layers.AveragePooling2D((1, pool_size), strides=(1, stride), padding="same", name=f"{name}_avg_mel")(x)
        return layers.MaxPooling2D((pool_size, 1), strides=(stride, 1), padding="same", name=f"{name}_max_time")(x)
    if mode == "avemax3":
        x = layers.MaxPooling2D((1, pool_size), strides=(1, stride), padding="same", name=f"{name}_max_mel")(x)
        return layers.AveragePooling2D((pool_size, 1), strides=(stride, 1), padding="same", name=f"{name}_avg_time")(x)
    raise ValueError(f"pooling mode {mode!r} unknown; choose one of {', '.join(POOLING_MODES)}")
