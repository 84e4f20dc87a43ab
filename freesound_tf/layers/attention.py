"""Simple self-attention over a whole feature map (the idea of fastai's SimpleSelfAttention).

For a map with positions n and channels c (channels-last, x as an (n, c) matrix per clip)::

    out = x + gamma * conv(x) @ (x^T x)

``conv`` is a 1x1 convolution (a (c, c) matrix, no bias) and ``x^T x`` the (c, c) Gram matrix of
the channels summed over every position, so each position is re-mixed by channel correlations of
the whole clip at a cost linear in the number of positions (no (n, n) attention map). ``gamma``
starts at 0: the layer is the identity at initialisation and learns how much attention to add.
"""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="freesound_tf")
class SimpleSelfAttention(keras.layers.Layer):
    """(batch, time, mel, channels) -> same shape; any time length."""

    def build(self, input_shape) -> None:
        channels = input_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(channels, channels), initializer="he_normal")
        self.gamma = self.add_weight(name="gamma", shape=(), initializer="zeros")

    def call(self, x):
        # The Gram matrix sums over every position, which overflows float16 on long clips: float32 here.
        x32 = ops.cast(x, "float32")
        kernel = ops.cast(self.kernel, "float32")
        gram = ops.einsum("btmc,btmd->bcd", x32, x32)
        mixed = ops.einsum("btmc,cd->btmd", x32, kernel)
        attended = ops.einsum("btmc,bcd->btmd", mixed, gram)
        return ops.cast(x32 + ops.cast(self.gamma, "float32") * attended, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
