"""The seed-004 stacker network (see ``freesound_tf.stacking`` for the whole method)."""
from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from freesound_tf.stacking.layers import AppendWeightedMean, LocallyConnected1D, SelectRow, ShiftedTanh


def build_stacker(n_classes: int, member_weights: Sequence[float], shift: float = 1.6,
                  label_correlation: bool = True) -> keras.Model:
    """Member scores ``(b, classes, members)`` -> stacked scores ``(b, classes)``.

    The weighted mean of the members is appended as the last channel; a per-class
    locally-connected layer (no bias) starts by picking that channel and keeps each class's
    weights at unit L2 norm; Flatten -> Dense(classes, identity init, no bias) learns label
    correlation; ``ShiftedTanh`` maps to (0, 1). At initialisation the output is therefore a
    monotone function of the weighted-mean blend. ``label_correlation=False`` leaves the Dense out
    (classes x members parameters instead of classes x (members + classes)): for small OOF matrices.
    """
    n_members = len(member_weights)
    scores = keras.Input((n_classes, n_members), name="member_scores")
    x = AppendWeightedMean(member_weights, name="append_weighted_mean")(scores)
    x = LocallyConnected1D(1, kernel_size=1, use_bias=False, kernel_initializer=SelectRow(n_members),
                           kernel_constraint=keras.constraints.UnitNorm(axis=1), name="per_class_blend")(x)
    x = layers.Flatten(name="flatten")(x)
    if label_correlation:
        x = layers.Dense(n_classes, use_bias=False, kernel_initializer="identity", name="label_correlation")(x)
    return keras.Model(scores, ShiftedTanh(shift, name="scores")(x), name="stacker")
