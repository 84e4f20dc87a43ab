"""resnext: ResNet-50-style bottleneck networks and ResNeXt (seed 003, FAT2018) on the log-mel frontend.

waveform -> log-mel (+ delta, delta-delta with ``frontend.deltas``; time/frequency masks in training)
-> 7x7/2 conv + 3x3/2 max pool -> stages of bottleneck blocks (1x1 -> grouped 3x3 -> 1x1, residual;
the first block of every stage after the first has stride 2) -> global average pool
-> [+ global-feature GRU branch] [+ length] -> Dense.

Options (``[model.options]``, :class:`ResNeXtOptions`): stage ``depths``; ``cardinality`` groups of
the 3x3 conv (1 = plain ResNet); ``bottleneck_width`` channels per group in the first stage; stem /
``base_width`` (stage ``i`` outputs ``4 * base_width * 2**i`` channels, its 3x3 conv has
``cardinality * bottleneck_width * 2**i``). ResNet-50 = (1, 64, 64), ResNeXt-50 32x4d = (32, 4, 64).
``bn_momentum`` 0.9 is PyTorch's 0.1. Of the shared ``[model]`` fields it uses ``dropout``,
``use_global_features``, ``use_length`` and ``gru_units``; the cnn9 fields are ignored.
The grouped 3x3 conv is :class:`GroupedConv2D` (see there why not Keras' own ``Conv2D(groups=...)``).
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import layers

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig
from freesound_tf.layers import build_frontend, classifier, head_input
from freesound_tf.models.registry import model_options, register

EXPANSION = 4  # bottleneck output channels per base channel


@keras.saving.register_keras_serializable(package="freesound_tf")
class GroupedConv2D(layers.Conv2D):
    """``Conv2D(groups=...)`` (channels last) run as TensorFlow's native grouped convolution.

    Keras 3 puts every grouped convolution in an XLA-compiled function (for TensorFlow versions without
    CPU kernels). TF 2.20 runs grouped ``Conv2D`` natively on CPU and GPU, and the XLA function would
    make TF Serving fail on CPU (its XLA:CPU JIT is off by default), recompile for every new clip
    length and retrace on every eager call. Same weights and config as ``Conv2D``.
    """

    def convolution_op(self, inputs, kernel):
        if self.data_format != "channels_last":
            raise ValueError(f"{self.name}: GroupedConv2D supports channels_last only")
        return tf.nn.conv2d(inputs, kernel, strides=self.strides, padding=self.padding.upper(),
                            dilations=self.dilation_rate)


@dataclass(frozen=True)
class ResNeXtOptions:
    depths: tuple[int, ...] = (3, 4, 6, 3)
    cardinality: int = 1
    bottleneck_width: int = 64
    base_width: int = 64
    bn_momentum: float = 0.9

    def __post_init__(self) -> None:
        if not self.depths or min(self.depths) < 1:
            raise ConfigError("depths: needs at least one stage, each with >= 1 block (ResNet-50: [3, 4, 6, 3])")
        if self.cardinality < 1:
            raise ConfigError("cardinality: must be >= 1 (1 is a plain ResNet)")
        if self.bottleneck_width < 1:
            raise ConfigError("bottleneck_width: must be >= 1")
        if self.base_width < 1:
            raise ConfigError("base_width: must be >= 1")
        if not 0.0 < self.bn_momentum < 1.0:
            raise ConfigError("bn_momentum: must be in (0, 1)")


def _preset(**options) -> ModelConfig:
    return ModelConfig(name="resnext", use_global_features=False, use_length=False, options=options)


PRESETS = {
    "resnet50": _preset(cardinality=1, bottleneck_width=64),
    "resnext50_32x4d": _preset(cardinality=32, bottleneck_width=4),
}


def bottleneck(x, inner: int, out: int, cardinality: int, stride: int, bn_momentum: float, name: str):
    """1x1 reduce -> grouped 3x3 (stride) -> 1x1 expand, added to the (projected) input, then ReLU."""
    def bn(t, suffix: str):
        return layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_{suffix}_bn")(t)

    shortcut = x
    if stride != 1 or x.shape[-1] != out:
        shortcut = bn(layers.Conv2D(out, 1, strides=stride, use_bias=False, name=f"{name}_proj_conv")(x), "proj")
    y = layers.ReLU(name=f"{name}_reduce_relu")(
        bn(layers.Conv2D(inner, 1, use_bias=False, name=f"{name}_reduce_conv")(x), "reduce"))
    y = GroupedConv2D(inner, 3, strides=stride, padding="same", groups=cardinality, use_bias=False,
                      name=f"{name}_group_conv")(y)
    y = layers.ReLU(name=f"{name}_group_relu")(bn(y, "group"))
    y = bn(layers.Conv2D(out, 1, use_bias=False, name=f"{name}_expand_conv")(y), "expand")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


@register("resnext", presets=PRESETS, options=ResNeXtOptions)
def build_resnext(config: ModelConfig, frontend: FrontendConfig, n_classes: int, sample_rate: int,
                  input_seconds: float | None = 5.0, multilabel: bool = True,
                  global_steps: int = 128) -> keras.Model:
    """Build a ResNet / ResNeXt as a functional model (inputs and output as cnn9's).

    ``input_seconds=None`` accepts waveforms of any length (at least one STFT frame).
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    opts: ResNeXtOptions = model_options(config)
    samples = None if input_seconds is None else int(round(input_seconds * sample_rate))
    waveform = keras.Input((samples,), name="waveform", dtype="float32")
    inputs = {"waveform": waveform}
    x = build_frontend(frontend, sample_rate, samples)(waveform)

    x = layers.Conv2D(opts.base_width, 7, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=opts.bn_momentum, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for i, depth in enumerate(opts.depths):
        inner = opts.cardinality * opts.bottleneck_width * 2 ** i
        out = EXPANSION * opts.base_width * 2 ** i
        for j in range(depth):
            stride = 2 if i > 0 and j == 0 else 1
            x = bottleneck(x, inner, out, opts.cardinality, stride, opts.bn_momentum,
                           name=f"stage{i + 1}_block{j + 1}")

    pooled = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = head_input(inputs, pooled, config.use_global_features, config.use_length, global_steps, config.gru_units,
                   opts.bn_momentum)
    scores = classifier(x, n_classes, multilabel, config.dropout)
    kind = "resnet" if opts.cardinality == 1 else f"resnext{opts.cardinality}x{opts.bottleneck_width}d"
    return keras.Model(inputs, scores, name=kind)
