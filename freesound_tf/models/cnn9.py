"""cnn9: the 9-conv log-mel CNN family of the FAT2019 Keras + kapre solution, on raw waveforms.

waveform -> log-mel frontend -> stem (3x3 conv, 64 channels; or the multi-scale stem, 3x3/5x5/7x7
convs of 32 channels each) [-> SE] -> 4 blocks (conv-BN-ReLU [-> SE] -> 3x3/1 max pool ->
conv-BN-ReLU [-> SE], see ``conv_block``) with an axis-aware stride-2 pool after every block but the
last -> pixel-shuffle head -> [+ global-feature GRU branch] [+ length] -> Dense. The block widths
scale by ``w_ratio``, the stem does not (as in seed 004's code). For 5 s at 44.1 kHz: log-mel
(431, 64) -> last block (54, 8, 512 x w_ratio).

Variants: ``v1mix`` (plain, avemax1), ``max3exam`` (plain, avemax3), ``se`` (SE after the stem and
after every block conv: 9 SE layers), ``msc_se`` (multi-scale stem + SE; seed 004's ``se_w15``
member is ``msc_se`` at w_ratio 1.5).
"""
from __future__ import annotations

from dataclasses import dataclass

import keras

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig
from freesound_tf.layers import (
    PixelShuffleHead,
    axis_pool,
    build_frontend,
    classifier,
    conv_bn_relu,
    conv_block,
    head_input,
    multi_scale_stem,
    squeeze_excite,
)
from freesound_tf.models.registry import register

POOL_SIZES = (2, 2, 3, 2)  # avemax window per block; blocks past the fourth use 2


@dataclass(frozen=True)
class Cnn9Variant:
    pooling: str
    se: bool
    multi_scale_stem: bool


VARIANTS = {
    "v1mix": Cnn9Variant(pooling="avemax1", se=False, multi_scale_stem=False),
    "max3exam": Cnn9Variant(pooling="avemax3", se=False, multi_scale_stem=False),
    "se": Cnn9Variant(pooling="avemax1", se=True, multi_scale_stem=False),
    "msc_se": Cnn9Variant(pooling="avemax1", se=True, multi_scale_stem=True),
}
W_RATIOS = (1.0, 1.5, 2.0)
PRESETS = {f"{variant}_w{w:.1f}": ModelConfig(name="cnn9", variant=variant, w_ratio=w)
           for variant in VARIANTS for w in W_RATIOS}


def _scaled(width: int, w_ratio: float) -> int:
    return max(1, int(round(width * w_ratio)))


def check_variant(config: ModelConfig) -> None:
    if config.variant not in VARIANTS:
        raise ConfigError(f"model.variant: unknown cnn9 variant {config.variant!r}; "
                          f"choose one of {', '.join(VARIANTS)}")


@register("cnn9", presets=PRESETS, check=check_variant)
def build_cnn9(config: ModelConfig | str = "se", frontend: FrontendConfig | None = None, n_classes: int = 80,
               sample_rate: int = 44100, input_seconds: float | None = 5.0, multilabel: bool = True,
               global_steps: int = 128) -> keras.Model:
    """Build a cnn9 variant as a functional model; the defaults are seed 004's ``se`` member.

    ``config``: a ``ModelConfig``, a variant name (``"msc_se"``) or a preset (``"msc_se_w2.0"``);
    ``frontend``: None for the seed's log-mel (1024-point FFT, hop 512, 64 mels).
    Inputs (a dict): ``waveform`` (batch, samples) float32 at ``sample_rate``; ``global_features``
    (batch, global_steps, 12) if ``config.use_global_features``; ``length`` (batch, 1) if
    ``config.use_length``. ``input_seconds=None`` accepts waveforms of any length. Output
    ``scores`` (batch, n_classes): sigmoid if ``multilabel`` else softmax, float32.
    (``freesound_tf.models.build_model(..., waveform_only=True)`` computes the side inputs in-graph.)
    """
    config, frontend = _resolve(config), frontend or FrontendConfig()
    check_variant(config)
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    variant = VARIANTS[config.variant]
    pooling = config.pooling or variant.pooling
    _check_mel_axis(frontend.n_mels, len(config.block_widths))

    samples = None if input_seconds is None else int(round(input_seconds * sample_rate))
    waveform = keras.Input((samples,), name="waveform", dtype="float32")
    inputs = {"waveform": waveform}
    x = build_frontend(frontend, sample_rate, samples)(waveform)

    if variant.multi_scale_stem:
        x = multi_scale_stem(x, max(1, config.stem_width // 2), config.bn_momentum, name="stem")
    else:
        x = conv_bn_relu(x, config.stem_width, 3, config.bn_momentum, name="stem")
    if variant.se:
        x = squeeze_excite(x, ratio=4, name="stem_se")

    last = len(config.block_widths) - 1
    for i, width in enumerate(config.block_widths):
        name = f"block{i + 1}"
        x = conv_block(x, _scaled(width, config.w_ratio), config.bn_momentum, name=name, se=variant.se,
                       smooth_pool=i < last, cat=config.conv_cat, gated_highway=config.highway)
        if i < last:
            x = axis_pool(x, pooling, POOL_SIZES[i] if i < len(POOL_SIZES) else 2, 2, name=f"{name}_pool")

    x = head_input(inputs, PixelShuffleHead(name="pixel_shuffle_head")(x), config.use_global_features,
                   config.use_length, global_steps, config.gru_units, config.global_bn_momentum)
    scores = classifier(x, n_classes, multilabel, config.dropout)
    return keras.Model(inputs, scores, name=f"cnn9_{config.variant}")


def _resolve(config: ModelConfig | str) -> ModelConfig:
    if isinstance(config, ModelConfig):
        return config
    if config in VARIANTS:
        return ModelConfig(name="cnn9", variant=config)
    if config in PRESETS:
        return PRESETS[config]
    raise ConfigError(f"build_cnn9: unknown variant or preset {config!r}; variants: {', '.join(VARIANTS)}; "
                      f"presets: {', '.join(PRESETS)}")


def _check_mel_axis(n_mels: int, n_blocks: int) -> None:
    """The pixel-shuffle head pairs mel rows, so the mel axis must be even after the pooled blocks."""
    mels = n_mels
    for _ in range(n_blocks - 1):
        mels = -(-mels // 2)  # 'same' pooling with stride 2
    if mels % 2:
        raise ConfigError(f"frontend.n_mels: {n_mels} mels leave {mels} (odd) after {n_blocks - 1} "
                          f"stride-2 pools; the pixel-shuffle head needs an even count (e.g. 64)")

