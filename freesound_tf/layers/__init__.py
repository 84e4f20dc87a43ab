"""Keras layers: in-graph audio frontend, convolutional blocks and heads (all serializable).

Importing this package registers every custom layer with Keras (package ``freesound_tf``)
and kapre's layers (package ``Kapre``), so ``keras.models.load_model`` can rebuild models.
"""
from freesound_tf.layers.blocks import (
    HighwayGate,
    conv_bn_relu,
    conv_block,
    conv_cat,
    highway,
    multi_scale_stem,
    squeeze_excite,
)
from freesound_tf.layers.frontend import (
    ClipDecibel,
    FrequencyEncoding,
    SpectralPower,
    TrainableMelFilterbank,
    build_frontend,
    frontend_channels,
    mel_matrix,
)
from freesound_tf.layers.heads import PixelShuffleHead, classifier, global_feature_branch
from freesound_tf.layers.pooling import POOLING_MODES, axis_pool

__all__ = [
    "POOLING_MODES", "ClipDecibel", "FrequencyEncoding", "HighwayGate", "PixelShuffleHead", "SpectralPower",
    "TrainableMelFilterbank", "axis_pool", "build_frontend", "classifier", "conv_bn_relu", "conv_block",
    "conv_cat", "frontend_channels", "global_feature_branch", "highway", "mel_matrix", "multi_scale_stem",
    "squeeze_excite",
]
