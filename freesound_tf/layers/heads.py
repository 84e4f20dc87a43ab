"""Heads: pixel-shuffle global pooling of the conv map and the global-feature recurrent branch."""
from __future__ import annotations

import keras
from keras import layers, ops

_PACKAGE = "freesound_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PixelShuffleHead(keras.layers.Layer):
    """(b, t, m, c) -> pairs of mel rows stacked as channels (b, t, m/2, 2c) -> max over time -> mean over mel.

    Output (b, 2c): feature k < c is the mel-mean of max-over-time of even mel rows of channel k,
    feature c + k the same for odd rows. Max over time is taken first: it commutes with the
    mel/channel regrouping and avoids reshaping a dynamic time axis.
    """

    def build(self, input_shape) -> None:
        if input_shape[2] is None or input_shape[2] % 2:
            raise ValueError(f"PixelShuffleHead needs an even, known mel axis; got shape {input_shape}. "
                             "Choose frontend.n_mels so it stays even after the pooling stages")

    def call(self, x):
        _, _, n_mels, channels = x.shape
        peak = ops.max(x, axis=1)  # (b, m, c)
        paired = ops.reshape(peak, (-1, n_mels // 2, 2 * channels))
        return ops.mean(paired, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[3])


def global_feature_branch(x, units: int = 128, bn_momentum: float = 0.99, name: str = "global"):
    """(b, steps, features) -> BN -> 2 x bidirectional GRU (directions summed) -> max over steps -> (b, units)."""
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    for i in (1, 2):
        x = layers.Bidirectional(layers.GRU(units, return_sequences=True), merge_mode="sum", name=f"{name}_bigru{i}")(x)
    return layers.GlobalMaxPooling1D(name=f"{name}_max")(x)


GLOBAL_FEATURE_DIM = 12  # statistics per global-feature step (see freesound_tf.data.features)


def head_input(inputs: dict, pooled, use_global_features: bool, use_length: bool, global_steps: int,
               gru_units: int, bn_momentum: float):
    """The pooled conv features plus the optional side inputs every architecture shares (the
    global-feature GRU branch, the length feature), concatenated; adds those inputs to ``inputs``."""
    features = [pooled]
    if use_global_features:
        inputs["global_features"] = keras.Input((global_steps, GLOBAL_FEATURE_DIM), name="global_features")
        features.append(global_feature_branch(inputs["global_features"], gru_units, bn_momentum, name="global"))
    if use_length:
        inputs["length"] = keras.Input((1,), name="length")
        features.append(inputs["length"])
    return features[0] if len(features) == 1 else layers.Concatenate(name="head_concat")(features)


def classifier(features, n_classes: int, multilabel: bool, dropout: float = 0.0, name: str = "classifier"):
    """Optional dropout -> Dense -> sigmoid (multi-label) or softmax, the activation kept in float32."""
    if dropout > 0:
        features = layers.Dropout(dropout, name=f"{name}_dropout")(features)
    logits = layers.Dense(n_classes, name=f"{name}_logits")(features)
    return layers.Activation("sigmoid" if multilabel else "softmax", dtype="float32", name="scores")(logits)

