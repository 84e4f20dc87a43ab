"""xresnet: the XResNet-18/34/50 of FAT2019's 6th place (seed 001), on the log-mel frontend.

waveform -> log-mel (batch, time, mel, channels) [-> bilinear upsample] -> stem: three 3x3
conv-BN-ReLU (the first stride 2) + 3x3/2 max pool -> 4 stages of residual blocks (widths
base_width x 1, 2, 4, 8; the first stage stride 1, the others stride 2) -> global pooling (``head``)
[+ global-feature branch] [+ length] -> classifier [-> seed 001's flip views, ``flip_views``].

The "bag of tricks" details of XResNet:
* basic blocks (two 3x3 convs; depth 18/34) or bottlenecks (1x1, 3x3, 1x1 with 4x expansion; 50);
  the stride sits on the 3x3 conv;
* ResNet-D shortcut: a 2x2/2 average pool, then a 1x1 conv-BN where the channels change;
* the last BN of every residual branch starts with gamma 0, so each block starts as the identity.

``self_attention`` (the seed's "ssa" models) adds :class:`SimpleSelfAttention` where fastai's
XResNet puts it: at the end of the residual branch (after its zero-init BN, before the add) of the
last block of the first stage, the largest feature map. Every convolution is 'same' padded, so any
clip length works (time shrinks 32x by the last stage).
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig
from freesound_tf.layers import build_frontend, classifier, head_input
from freesound_tf.layers.attention import SimpleSelfAttention
from freesound_tf.layers.flip_views import VIEWS, FlipScores, FlipViews
from freesound_tf.models.registry import model_options, register

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
BOTTLENECK_EXPANSION = 4  # depth 50


@dataclass(frozen=True)
class XResNetOptions:
    """``[model.options]`` of ``xresnet``."""

    depth: int = 18  # 18 | 34 (basic blocks) | 50 (bottlenecks)
    base_width: int = 64  # width of the first stage; stages double it
    stem_widths: tuple[int, ...] = (32, 32, 64)  # the three stem convs
    self_attention: bool = False  # the "ssa" variants
    bn_momentum: float = 0.9  # Keras convention (PyTorch's default momentum 0.1)
    upsample: int = 1  # bilinear log-mel upsampling factor (seed 001 resized 128x128 crops to 256x256)
    # Seed 001: time- and mel-reversed views of every clip as extra classes, 4-way flip TTA
    # (freesound_tf.layers.flip_views); scores keep the original classes.
    flip_views: bool = False
    # After the last stage: "avg_max" (average and max pooling concatenated -> classifier); "avg" (average
    # pooling -> classifier: seed 001's xresnet*ssa); "fastai" (fastai's cnn_learner head that seed 001's
    # plain xresnet34 / xresnet50 got: max and average pooling -> BN -> dropout 0.25 -> Dense 512 -> ReLU
    # -> BN -> dropout 0.5 -> classifier).
    head: str = "avg_max"

    def __post_init__(self) -> None:
        if self.depth not in BLOCKS:
            raise ConfigError(f"depth: {self.depth} unknown; choose one of {', '.join(map(str, BLOCKS))}")
        if self.base_width < 1:
            raise ConfigError("base_width: must be >= 1")
        if len(self.stem_widths) != 3 or min(self.stem_widths) < 1:
            raise ConfigError("stem_widths: must be three widths >= 1")
        if not 0.0 < self.bn_momentum < 1.0:
            raise ConfigError("bn_momentum: must be in (0, 1)")
        if self.upsample < 1:
            raise ConfigError("upsample: must be >= 1 (1: no upsampling)")
        if self.head not in ("avg_max", "avg", "fastai"):
            raise ConfigError("head: must be 'avg_max', 'avg' or 'fastai'")


def _preset(depth: int, ssa: bool) -> ModelConfig:
    return ModelConfig(name="xresnet", use_global_features=False, use_length=False,
                       options={"depth": depth, "self_attention": ssa})


PRESETS = {f"xresnet{d}{'ssa' if ssa else ''}": _preset(d, ssa) for ssa in (False, True) for d in BLOCKS}


def _conv_bn(x, filters: int, kernel: int, stride: int, momentum: float, name: str, relu: bool = True,
             zero_gamma: bool = False):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, gamma_initializer="zeros" if zero_gamma else "ones",
                                  name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def res_block(x, width: int, expansion: int, stride: int, momentum: float, name: str, attention: bool = False):
    """One XResNet block: residual branch (+ SSA) plus the ResNet-D shortcut, then ReLU."""
    out_channels = width * expansion
    if expansion == 1:
        y = _conv_bn(x, width, 3, stride, momentum, f"{name}_a")
        y = _conv_bn(y, out_channels, 3, 1, momentum, f"{name}_b", relu=False, zero_gamma=True)
    else:
        y = _conv_bn(x, width, 1, 1, momentum, f"{name}_a")
        y = _conv_bn(y, width, 3, stride, momentum, f"{name}_b")
        y = _conv_bn(y, out_channels, 1, 1, momentum, f"{name}_c", relu=False, zero_gamma=True)
    if attention:
        y = SimpleSelfAttention(name=f"{name}_ssa")(y)
    shortcut = x
    if stride != 1:
        shortcut = layers.AveragePooling2D(2, strides=stride, padding="same", name=f"{name}_down_pool")(shortcut)
    if x.shape[-1] != out_channels:
        shortcut = _conv_bn(shortcut, out_channels, 1, 1, momentum, f"{name}_down", relu=False)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


@register("xresnet", presets=PRESETS, options=XResNetOptions)
def build_xresnet(config: ModelConfig, frontend: FrontendConfig, n_classes: int, sample_rate: int,
                  input_seconds: float | None = 5.0, multilabel: bool = True,
                  global_steps: int = 128) -> keras.Model:
    """Build an XResNet (``config.options``: :class:`XResNetOptions`) as a functional model.

    Inputs as cnn9: ``waveform`` (batch, samples), plus ``global_features`` / ``length`` when the
    config asks for them; ``input_seconds=None`` accepts any length. Output ``scores`` (batch,
    n_classes), sigmoid if ``multilabel`` else softmax, float32. ``config.dropout`` applies before
    the classifier.
    """
    options: XResNetOptions = model_options(config)
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    momentum = options.bn_momentum
    samples = None if input_seconds is None else int(round(input_seconds * sample_rate))
    waveform = keras.Input((samples,), name="waveform", dtype="float32")
    inputs = {"waveform": waveform}
    x = build_frontend(frontend, sample_rate, samples)(waveform)
    if options.flip_views:
        if config.use_global_features or config.use_length:
            raise ConfigError("model.options.flip_views: scores flipped spectrograms only; set "
                              "model.use_global_features and model.use_length to false")
        x, view = FlipViews(name="flip_views")(x)
    if options.upsample > 1:
        x = layers.UpSampling2D(options.upsample, interpolation="bilinear", name="upsample")(x)

    for i, width in enumerate(options.stem_widths):
        x = _conv_bn(x, width, 3, 2 if i == 0 else 1, momentum, f"stem{i + 1}")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)

    expansion = BOTTLENECK_EXPANSION if options.depth == 50 else 1
    for s, n_blocks in enumerate(BLOCKS[options.depth]):
        for b in range(n_blocks):
            attention = options.self_attention and s == 0 and b == n_blocks - 1
            x = res_block(x, options.base_width * 2 ** s, expansion, 2 if s > 0 and b == 0 else 1, momentum,
                          name=f"stage{s + 1}_block{b + 1}", attention=attention)

    average = layers.GlobalAveragePooling2D(name="pool_avg")(x)
    pooled = average if options.head == "avg" else layers.Concatenate(name="avg_max_pool")(
        [average, layers.GlobalMaxPooling2D(name="pool_max")(x)])
    x = head_input(inputs, pooled, config.use_global_features, config.use_length, global_steps, config.gru_units,
                   momentum)
    dropout = config.dropout
    if options.head == "fastai":
        x = layers.Dropout(0.25, name="head_dropout1")(layers.BatchNormalization(momentum=momentum, name="head_bn1")(x))
        x = layers.Dense(512, activation="relu", name="head_dense")(x)
        x, dropout = layers.BatchNormalization(momentum=momentum, name="head_bn2")(x), 0.5
    scores = classifier(x, n_classes * (VIEWS if options.flip_views else 1), multilabel, dropout)
    if options.flip_views:
        scores = FlipScores(name="flip_scores")([scores, view])
    return keras.Model(inputs, scores, name=f"xresnet{options.depth}{'ssa' if options.self_attention else ''}")
