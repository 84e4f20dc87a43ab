"""Convolutional building blocks of the cnn9 family, composed from built-in Keras layers.

Functions take a tensor and return a tensor inside a functional graph; every layer they
create is named from ``name`` so summaries and checkpoints stay readable.
"""
from __future__ import annotations

import keras
from keras import layers

_PACKAGE = "freesound_tf"


def conv_bn_relu(x, filters: int, kernel_size: int | tuple[int, int], bn_momentum: float, name: str):
    """3x3 (or given) 'same' convolution without bias -> batch norm -> ReLU."""
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def squeeze_excite(x, ratio: int = 4, name: str = "se"):
    """Channel attention: global average -> Dense(C / ratio, ReLU) -> Dense(C, sigmoid) -> rescale."""
    channels = x.shape[-1]
    weights = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    weights = layers.Dense(max(1, channels // ratio), activation="relu", name=f"{name}_reduce")(weights)
    weights = layers.Dense(channels, activation="sigmoid", name=f"{name}_expand")(weights)
    return layers.Multiply(name=f"{name}_scale")([x, weights])


def multi_scale_stem(x, branch_filters: int, bn_momentum: float, name: str = "stem"):
    """Parallel 3x3, 5x5 and 7x7 convolutions (``branch_filters`` each), concatenated -> BN -> ReLU."""
    branches = [layers.Conv2D(branch_filters, k, padding="same", use_bias=False, name=f"{name}_conv{k}")(x)
                for k in (3, 5, 7)]
    x = layers.Concatenate(axis=-1, name=f"{name}_concat")(branches)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class HighwayGate(keras.layers.Layer):
    """``gate * transformed + (1 - gate) * carried`` for inputs [gate, transformed, carried]."""

    def call(self, inputs):
        gate, transformed, carried = inputs
        return gate * transformed + (1.0 - gate) * carried

    def compute_output_shape(self, input_shapes):
        return input_shapes[1]


def highway(block_input, block_output, name: str):
    """Gated highway connection around a block (Srivastava et al. 2015).

    The carry path is a 1x1 projection of the block input (channels usually change) and the
    transform gate a sigmoid 1x1 convolution of the same input, biased towards carrying at start.
    """
    channels = block_output.shape[-1]
    carried = layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_carry")(block_input)
    gate = layers.Conv2D(channels, 1, activation="sigmoid", bias_initializer=keras.initializers.Constant(-1.0),
                         name=f"{name}_gate")(block_input)
    return HighwayGate(name=f"{name}_highway")([gate, block_output, carried])


def conv_cat(first, second, filters: int, name: str):
    """Seed 004's conv_cat: concatenate a block's first conv output (after its 3x3 pool) with its second
    conv output and mix them by a 1x1 convolution with bias, no batch norm, no activation."""
    x = layers.Concatenate(axis=-1, name=f"{name}_cat")([first, second])
    return layers.Conv2D(filters, 1, name=f"{name}_mix_conv")(x)


def conv_block(x, filters: int, bn_momentum: float, name: str, se: bool = False, smooth_pool: bool = True,
               cat: bool = False, gated_highway: bool = False):
    """Seed 004's block: conv-BN-ReLU [-> SE] -> 3x3 stride-1 max pool (``smooth_pool``) -> conv-BN-ReLU
    [-> SE], then optional conv_cat (``conv_se_cat`` with ``se``) or a gated highway around the block.

    The stride-2 pool that follows a block is the caller's (see ``axis_pool``).
    """
    block_input = x
    x = conv_bn_relu(x, filters, 3, bn_momentum, name=f"{name}_1")
    if se:
        x = squeeze_excite(x, ratio=4, name=f"{name}_1_se")
    if smooth_pool:
        x = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_smooth")(x)
    first = x
    x = conv_bn_relu(x, filters, 3, bn_momentum, name=f"{name}_2")
    if se:
        x = squeeze_excite(x, ratio=4, name=f"{name}_2_se")
    if cat:
        x = conv_cat(first, x, filters, name=name)
    if gated_highway:
        x = highway(block_input, x, name=name)
    return x
