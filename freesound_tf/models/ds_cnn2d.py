"""ds_cnn2d: the 2D CNN with deep supervision of the FAT2019 3rd-place solution (seed 000).

waveform -> log-mel frontend (seed: 2048/1024/128 with the -1..1 frequency map channel) ->
``num_conv_blocks`` blocks of two 3x3 conv-BN-ReLU (optionally residual) + 2x2 max pool, widths
``conv_base_depth * growth_rate**i`` -> from block ``start_deep_supervision_on`` (0-based: the
seed's 1 is the second block) every block aggregated ("max": global max; "rnn": frequency mean,
bidirectional GRU, max over time — the seed's RNN member) and concatenated ->
[+ global-feature GRU branch] [+ length] -> Dense(hidden_units) + ReLU -> dropout -> Dense.

``[model.options]`` holds the fields of ``DsCnnOptions``. Of the shared ``[model]`` keys only
``bn_momentum``, ``use_global_features``, ``use_length`` and ``gru_units`` (side branch) apply.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig
from freesound_tf.layers import (
    AGGREGATIONS,
    build_frontend,
    classifier,
    deep_supervised_features,
    head_input,
)
from freesound_tf.models.registry import model_options, register


def check_option(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {why}")


@dataclass(frozen=True)
class DsCnnOptions:
    """Options of the deep-supervised CNNs; defaults from the seed's basic 2D command line."""

    num_conv_blocks: int = 5
    conv_base_depth: int = 50
    growth_rate: float = 1.5
    start_deep_supervision_on: int = 1  # 0-based block index: 1 = from the second block
    aggregation: str = "max"  # "max" | "rnn"
    residual: bool = False
    hidden_units: int = 512  # not in the write-up
    output_dropout: float = 0.0

    def __post_init__(self) -> None:
        key = "model.options."
        check_option(self.num_conv_blocks >= 1, key + "num_conv_blocks", "must be >= 1")
        check_option(self.conv_base_depth >= 1, key + "conv_base_depth", "must be >= 1")
        check_option(self.growth_rate >= 1.0, key + "growth_rate", "must be >= 1.0")
        check_option(0 <= self.start_deep_supervision_on < self.num_conv_blocks, key + "start_deep_supervision_on",
                     f"must be a 0-based block index in [0, num_conv_blocks = {self.num_conv_blocks})")
        check_option(self.aggregation in AGGREGATIONS, key + "aggregation", "must be 'max' or 'rnn'")
        check_option(self.hidden_units >= 1, key + "hidden_units", "must be >= 1")
        check_option(0.0 <= self.output_dropout < 1.0, key + "output_dropout", "must be in [0, 1)")

    def widths(self) -> tuple[int, ...]:
        """Block widths conv_base_depth * growth_rate**i (floored), e.g. 50, 75, 112, 168, 253."""
        return tuple(int(self.conv_base_depth * self.growth_rate ** i) for i in range(self.num_conv_blocks))


def parse_options(config: ModelConfig, name: str) -> DsCnnOptions:
    """``config.options`` parsed by the registry; ``config.name`` must be the builder's ``name``."""
    if config.name != name:
        raise ConfigError(f"model.name: this builder is {name!r}, got {config.name!r}; set model.name = {name!r}")
    return model_options(config)


def assemble(waveform, spectrum, config: ModelConfig, options: DsCnnOptions, n_classes: int,
             multilabel: bool, global_steps: int, name: str) -> keras.Model:
    """Shared by ds_cnn2d and ds_cnn1d: deep-supervised body on ``spectrum`` ((b, t, c) or
    (b, t, f, c)), cnn9's optional side inputs, then the 2-layer classifier."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    inputs = {"waveform": waveform}
    body = deep_supervised_features(spectrum, options.widths(), options.start_deep_supervision_on,
                                    options.aggregation, options.residual, config.bn_momentum)
    x = head_input(inputs, body, config.use_global_features, config.use_length, global_steps, config.gru_units,
                   config.bn_momentum)
    x = layers.Dense(options.hidden_units, activation="relu", name="head_hidden")(x)
    scores = classifier(x, n_classes, multilabel, options.output_dropout)
    return keras.Model(inputs, scores, name=name)


def _preset(**options) -> ModelConfig:
    return ModelConfig(name="ds_cnn2d", use_global_features=False, use_length=False, options=options)


PRESETS = {"max": _preset(), "rnn": _preset(aggregation="rnn")}


@register("ds_cnn2d", presets=PRESETS, options=DsCnnOptions)
def build_ds_cnn2d(config: ModelConfig, frontend: FrontendConfig, n_classes: int, sample_rate: int,
                   input_seconds: float | None = 5.0, multilabel: bool = True,
                   global_steps: int = 128) -> keras.Model:
    """Build ds_cnn2d; inputs and output as cnn9 (``input_seconds=None``: any waveform length)."""
    options = parse_options(config, "ds_cnn2d")
    samples = None if input_seconds is None else int(round(input_seconds * sample_rate))
    waveform = keras.Input((samples,), name="waveform", dtype="float32")
    spectrum = build_frontend(frontend, sample_rate, samples)(waveform)
    return assemble(waveform, spectrum, config, options, n_classes, multilabel, global_steps,
                    name=f"ds_cnn2d_{options.aggregation}")
