"""Keras layers: in-graph audio frontend, convolutional blocks and heads (all serializable).

Importing this package registers every custom layer with Keras (package ``freesound_tf``)
and kapre's layers (package ``Kapre``), so ``keras.models.load_model`` can rebuild models.
"""
from freesound_tf.layers.attention import SimpleSelfAttention  # noqa: F401
from freesound_tf.layers.blocks import (
    HighwayGate,
    conv_bn_relu,
    conv_block,
    conv_cat,
    highway,
    multi_scale_stem,
    squeeze_excite,
)
from freesound_tf.layers.equalizer import RandomEqualizer  # noqa: F401
from freesound_tf.layers.erasing import RandomErasing
from freesound_tf.layers.frontend import (
    ClipDecibel,
    FrequencyEncoding,
    SpectralPower,
    TrainableMelFilterbank,
    build_frontend,
    frontend_channels,
    mel_matrix,
)
from freesound_tf.layers.deep_supervision import AGGREGATIONS, deep_supervised_features  # noqa: F401
from freesound_tf.layers.heads import (
    GLOBAL_FEATURE_DIM, PixelShuffleHead, classifier, global_feature_branch, head_input,
)
from freesound_tf.layers.pca import PCAProjection  # noqa: F401
from freesound_tf.layers.pooling import POOLING_MODES, axis_pool
from freesound_tf.layers.summary_stats import ClipSummaryStats  # noqa: F401

__all__ = [
    "GLOBAL_FEATURE_DIM",
    "head_input",
    "POOLING_MODES", "ClipDecibel", "FrequencyEncoding", "HighwayGate", "PixelShuffleHead", "RandomErasing",
    "SpectralPower",
    "TrainableMelFilterbank", "axis_pool", "build_frontend", "classifier", "conv_bn_relu", "conv_block",
    "conv_cat", "frontend_channels", "global_feature_branch", "highway", "mel_matrix", "multi_scale_stem",
    "squeeze_excite",
]
