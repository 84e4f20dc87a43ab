"""Deep-supervised conv body and head of the FAT2019 3rd-place models (seed 000), 1D or 2D.

The body is a stack of blocks (two conv-BN-ReLU, optionally residual, then 2x or 2x2 'same' max
pooling). From block ``start`` (0-based) on, every block's output is reduced to one vector and the
vectors are concatenated, so shallow blocks reach the classifier directly:

* ``"max"``: global max over time (and frequency);
* ``"rnn"``: mean over frequency (2D), a bidirectional GRU over time with as many units as the
  block has channels (directions summed), then max over time.

Either way the feature vector has sum(widths[start:]) entries. Only built-in Keras layers are
used, so any input length works and the models save, reload and export without custom code.
"""
from __future__ import annotations

from keras import layers

AGGREGATIONS = ("max", "rnn")


def ds_conv_block(x, filters: int, rank: int, residual: bool, bn_momentum: float, name: str):
    """Two 'same' size-3 convolutions with BN (ReLU after each; with ``residual`` the second ReLU
    follows the sum with the block input, 1x1-projected when the width changes), then max pooling by 2."""
    conv = layers.Conv1D if rank == 1 else layers.Conv2D
    shortcut = x
    x = conv(filters, 3, padding="same", use_bias=False, name=f"{name}_1_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_1_bn")(x)
    x = layers.ReLU(name=f"{name}_1_relu")(x)
    x = conv(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_2_bn")(x)
    if residual:
        if shortcut.shape[-1] != filters:
            shortcut = conv(filters, 1, use_bias=False, name=f"{name}_proj_conv")(shortcut)
            shortcut = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_proj_bn")(shortcut)
        x = layers.Add(name=f"{name}_add")([x, shortcut])
    x = layers.ReLU(name=f"{name}_2_relu")(x)
    pool = layers.MaxPooling1D if rank == 1 else layers.MaxPooling2D
    return pool(2, padding="same", name=f"{name}_pool")(x)


def aggregate(x, aggregation: str, name: str):
    """(b, t, c) or (b, t, f, c) -> (b, c): global max, or GRU over time (see the module docstring)."""
    rank = len(x.shape) - 2
    if aggregation == "max":
        pool = layers.GlobalMaxPooling1D if rank == 1 else layers.GlobalMaxPooling2D
        return pool(name=f"{name}_max")(x)
    if aggregation != "rnn":
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    channels = x.shape[-1]
    if rank == 2:
        # Mean over the (static) frequency axis with built-in layers; time stays dynamic.
        x = layers.AveragePooling2D((1, x.shape[2]), name=f"{name}_freq_mean")(x)
        x = layers.Reshape((-1, channels), name=f"{name}_squeeze")(x)
    x = layers.Bidirectional(layers.GRU(channels, return_sequences=True), merge_mode="sum",
                             name=f"{name}_bigru")(x)
    return layers.GlobalMaxPooling1D(name=f"{name}_max")(x)


def deep_supervised_features(x, widths: tuple[int, ...], start: int, aggregation: str = "max",
                             residual: bool = False, bn_momentum: float = 0.9, name: str = "block"):
    """Run ``len(widths)`` blocks on ``x`` (rank 1: (b, t, c), rank 2: (b, t, f, c)); return the
    concatenated aggregates of blocks ``start``.. (0-based), shape (b, sum(widths[start:]))."""
    if not 0 <= start < len(widths):
        raise ValueError(f"start must be in [0, {len(widths)}), got {start}")
    rank = len(x.shape) - 2
    supervised = []
    for i, width in enumerate(widths):
        x = ds_conv_block(x, width, rank, residual, bn_momentum, name=f"{name}{i + 1}")
        if i >= start:
            supervised.append(aggregate(x, aggregation, name=f"{name}{i + 1}_agg"))
    if len(supervised) == 1:
        return supervised[0]
    return layers.Concatenate(name="deep_supervision")(supervised)

