"""Stacker layers: a locally-connected 1D layer (Keras 3 has none) and the stacker's small pieces.

All are registered (package ``freesound_tf``), so ``keras.models.load_model`` rebuilds a saved
stacker once this module is imported.
"""
from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

_PACKAGE = "freesound_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LocallyConnected1D(keras.layers.Layer):
    """A 1D convolution whose weights are not shared: every output position has its own kernel.

    Input ``(batch, steps, channels)``, ``valid`` padding; output ``(batch, L, filters)`` with
    ``L = (steps - kernel_size) // strides + 1``. The kernel has shape
    ``(L, kernel_size * channels, filters)``: row ``j * channels + c`` of position ``i`` weights
    input step ``i * strides + j``, channel ``c`` (the layout of Keras 2's layer of this name),
    so a constraint over axis 1 acts on each position's (and filter's) whole weight vector.
    """

    def __init__(self, filters: int, kernel_size: int = 1, strides: int = 1, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_constraint=None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if filters < 1 or kernel_size < 1 or strides < 1:
            raise ValueError(f"LocallyConnected1D: filters ({filters}), kernel_size ({kernel_size}) and "
                             f"strides ({strides}) must all be >= 1")
        self.filters, self.kernel_size, self.strides, self.use_bias = filters, kernel_size, strides, use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)

    def _output_length(self, steps: int) -> int:
        return (steps - self.kernel_size) // self.strides + 1

    def build(self, input_shape) -> None:
        steps, channels = input_shape[1], input_shape[2]
        if steps is None or channels is None:
            raise ValueError(f"LocallyConnected1D needs a known number of steps and channels, got {input_shape}")
        length = self._output_length(steps)
        if length < 1:
            raise ValueError(f"LocallyConnected1D: kernel_size {self.kernel_size} is longer than the {steps} "
                             "input steps")
        self.kernel = self.add_weight(name="kernel", shape=(length, self.kernel_size * channels, self.filters),
                                      initializer=self.kernel_initializer, constraint=self.kernel_constraint)
        self.bias = (self.add_weight(name="bias", shape=(length, self.filters), initializer=self.bias_initializer)
                     if self.use_bias else None)

    def call(self, x):
        length, patch, _ = self.kernel.shape
        # Input step of tap j at output position i; gathering them gives every patch at once.
        taps = np.arange(length)[:, None] * self.strides + np.arange(self.kernel_size)[None, :]
        patches = ops.reshape(ops.take(x, taps, axis=1), (-1, length, patch))  # (b, L, k * channels)
        y = ops.einsum("blp,lpf->blf", patches, self.kernel)
        return y + self.bias if self.use_bias else y

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self._output_length(input_shape[1]), self.filters)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint)}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SelectRow(keras.initializers.Initializer):
    """Kernel ``(positions, rows, filters)`` that is 1 on row ``row`` and 0 elsewhere.

    With kernel size 1 the rows are input channels, so every position starts by passing one
    channel through unchanged (the stacker: the weighted-mean channel).
    """

    def __init__(self, row: int) -> None:
        self.row = row

    def __call__(self, shape, dtype=None):
        if len(shape) != 3 or not -shape[1] <= self.row < shape[1]:
            raise ValueError(f"SelectRow({self.row}) needs a (positions, rows, filters) shape with that row, "
                             f"got {shape}")
        value = np.zeros(shape, np.float32)
        value[:, self.row, :] = 1.0
        return ops.convert_to_tensor(value, dtype=dtype or "float32")

    def get_config(self) -> dict:
        return {"row": self.row}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AppendWeightedMean(keras.layers.Layer):
    """(b, classes, members) -> (b, classes, members + 1): the weighted mean over members appended last."""

    def __init__(self, member_weights: Sequence[float], **kwargs) -> None:
        super().__init__(**kwargs)
        if not member_weights or min(member_weights) <= 0:
            raise ValueError(f"AppendWeightedMean: weights must be positive, one per member; got {member_weights}")
        self.member_weights = [float(w) for w in member_weights]

    def build(self, input_shape) -> None:
        if input_shape[-1] != len(self.member_weights):
            raise ValueError(f"AppendWeightedMean has {len(self.member_weights)} weights for "
                             f"{input_shape[-1]} members; give one weight per member")

    def call(self, scores):
        w = np.asarray(self.member_weights, np.float32)
        mean = ops.sum(scores * (w / w.sum()), axis=-1, keepdims=True)
        return ops.concatenate([scores, mean], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "member_weights": self.member_weights}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ShiftedTanh(keras.layers.Layer):
    """(tanh(x - shift) + 1) / 2: a sigmoid-like squashing to (0, 1) whose midpoint sits at ``shift``."""

    def __init__(self, shift: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shift = float(shift)

    def call(self, x):
        return (ops.tanh(x - self.shift) + 1.0) / 2.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "shift": self.shift}
