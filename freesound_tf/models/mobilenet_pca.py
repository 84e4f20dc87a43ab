"""mobilenet_pca: seed 002's FAT2018 model, MobileNetV2 on the log-mel plus PCA of clip statistics.

    waveform -> log-mel frontend -> [pad to 32 frames] -> BN -> 1x1 conv (10, ReLU) -> 1x1 conv (3, ReLU)
             -> MobileNetV2 body (random init, any number of frames) -> global average pool -> dense1 ─┐
    waveform + clean log-mel -> ClipSummaryStats -> PCAProjection -> BN -> dense1_pca (zero init) ───┤ sum
                                 -> BN -> ReLU -> Dense 384 -> ReLU -> BN -> classifier

``dense1 + dense1_pca`` is one Dense over the concatenated features, split in two so that every layer
of the mel-only model (stage 1, ``mel_only = true``) has a twin of the same name and shape here:
stage 2 starts from stage 1 by layer name (``train.init_from``) and, before its first step, predicts
exactly what stage 1 did. Unlike the seed (Dense -> ReLU -> BN), the summed Dense has no bias and its BN
comes before the ReLU: TensorFlow's CPU graph optimizer fails on the fused MatMul + bias + Add + ReLU (an
error line per trace), and BN's offset does the bias's job. The statistics come from the log-mel before
SpecAugment / random erasing.
The PCA is fitted on the training clips by :func:`freesound_tf.training.adapt.adapt_model`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from keras import layers, ops

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig
from freesound_tf.layers import GLOBAL_FEATURE_DIM, build_frontend, classifier, global_feature_branch
from freesound_tf.layers.pca import PCAProjection
from freesound_tf.layers.summary_stats import ClipSummaryStats, summary_stats_size
from freesound_tf.models.registry import model_options, register

MIN_MELS = 32  # MobileNetV2 halves the mel axis five times
MIN_FRAMES = 32  # and the time axis: with fewer than 31 frames a stride-2 block gets an empty input


@dataclass(frozen=True)
class MobileNetPcaOptions:
    """``[model.options]`` of mobilenet_pca."""

    alpha: float = 1.0  # MobileNetV2 width multiplier
    pca_components: int = 350  # PCA outputs (fewer non-zero ones when the training set is smaller)
    dense_units: tuple[int, ...] = (1536, 384)
    adapter_channels: int = 10  # the first 1x1 conv; the second makes the 3 channels MobileNetV2 takes
    mel_only: bool = False  # stage 1 of the seed: no statistics / PCA branch
    # MobileNetV2 start: "" random init; "imagenet" Keras' ImageNet weights (downloaded once to ~/.keras, as
    # seed 002's MobileNetV2(include_top=False) did); or the path of a weights file for this MobileNetV2
    # (e.g. the downloaded mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5 on a machine
    # without internet).
    weights: str = ""

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise ConfigError("alpha: must be > 0 (MobileNetV2 width multiplier, e.g. 1.0 or 0.35)")
        if self.pca_components < 1:
            raise ConfigError("pca_components: must be >= 1")
        if len(self.dense_units) < 1 or min(self.dense_units) < 1:
            raise ConfigError("dense_units: needs at least one width, each >= 1")
        if self.adapter_channels < 1:
            raise ConfigError("adapter_channels: must be >= 1")


@keras.saving.register_keras_serializable(package="freesound_tf")
class PadFrames(layers.Layer):
    """(b, t, m, c) -> (b, max(t, min_frames), m, c): short spectrograms get ``value`` frames at the end
    (the dB floor, i.e. what zero-padding the audio gives); longer ones pass unchanged."""

    def __init__(self, min_frames: int, value: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_frames, self.value = int(min_frames), float(value)

    def call(self, x):
        missing = ops.maximum(self.min_frames - ops.shape(x)[1], 0)
        return tf.pad(x, [[0, 0], [0, missing], [0, 0], [0, 0]], constant_values=self.value)

    def compute_output_shape(self, input_shape):
        frames = None if input_shape[1] is None else max(input_shape[1], self.min_frames)
        return (input_shape[0], frames, *input_shape[2:])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "min_frames": self.min_frames, "value": self.value}


def _mobilenet_v2(options: MobileNetPcaOptions, n_mels: int) -> keras.Model:
    """The MobileNetV2 body over (time, mel, 3), started from ``options.weights``."""
    if options.weights not in ("", "imagenet") and not Path(options.weights).is_file():
        raise ConfigError(f"model.options.weights: {options.weights}: no such file; give the path of a MobileNetV2 "
                          "weights file, 'imagenet' (downloads) or '' (random init)")
    try:
        return keras.applications.MobileNetV2(input_shape=(None, n_mels, 3), alpha=options.alpha, include_top=False,
                                              weights=options.weights or None, name="mobilenetv2")
    except Exception as err:  # noqa: BLE001 (download, file and shape errors alike become one recipe error)
        why = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"model.options.weights: cannot start MobileNetV2 (alpha {options.alpha}) from "
                          f"{options.weights!r} ({why}); give a weights file of that network, or '' for random "
                          "init") from None


def _preset(**options) -> ModelConfig:
    return ModelConfig(name="mobilenet_pca", use_global_features=False, use_length=False, bn_momentum=0.99,
                       options=options)


PRESETS = {"mel_a1.0": _preset(mel_only=True), "pca_a1.0": _preset()}


@register("mobilenet_pca", presets=PRESETS, options=MobileNetPcaOptions)
def build_mobilenet_pca(config: ModelConfig, frontend: FrontendConfig, n_classes: int, sample_rate: int,
                        input_seconds: float | None = 5.0, multilabel: bool = True,
                        global_steps: int = 128) -> keras.Model:
    """Build the model: inputs ``waveform`` (+ ``global_features`` / ``length`` as in cnn9), output
    ``scores``. Every BatchNormalization, MobileNetV2's included, uses ``config.bn_momentum``.
    Clips of any length work: spectrograms shorter than ``MIN_FRAMES`` are padded with silence."""
    options: MobileNetPcaOptions = model_options(config)
    if frontend.n_mels < MIN_MELS:
        raise ConfigError(f"frontend.n_mels: mobilenet_pca needs >= {MIN_MELS} mel bands, got {frontend.n_mels}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    samples = None if input_seconds is None else int(round(input_seconds * sample_rate))
    waveform = keras.Input((samples,), name="waveform", dtype="float32")
    inputs = {"waveform": waveform}
    bn = {"momentum": config.bn_momentum}

    spectrogram = build_frontend(frontend, sample_rate, samples, name="frontend_body")
    # One sub-model with two outputs: the training-augmented log-mel and the clean one for the statistics.
    frontend_model = keras.Model(spectrogram.input, [spectrogram.output, spectrogram.get_layer("decibel").output],
                                 name="frontend")
    mel, clean_mel = frontend_model(waveform)

    x = PadFrames(MIN_FRAMES, -frontend.top_db, name="pad_frames")(mel)
    x = layers.BatchNormalization(name="mel_bn", **bn)(x)
    x = layers.Conv2D(options.adapter_channels, 1, activation="relu", name="to_rgb1")(x)
    x = layers.Conv2D(3, 1, activation="relu", name="to_rgb2")(x)
    body = _mobilenet_v2(options, frontend.n_mels)
    for layer in body.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = config.bn_momentum
    image = layers.GlobalAveragePooling2D(name="mel_pool")(body(x))

    first = options.dense_units[0]
    parts = [layers.Dense(first, use_bias=False, name="dense1")(image)]
    if not options.mel_only:
        # float32 under any precision policy: float16 would round the dB values and the PCA's centring.
        stats = ClipSummaryStats(frontend.n_fft, frontend.hop_length, name="summary_stats",
                                 dtype="float32")([waveform, clean_mel])
        n_components = min(options.pca_components, summary_stats_size(frontend.n_mels))
        pca = PCAProjection(n_components, name="pca", dtype="float32")(stats)
        pca = layers.BatchNormalization(name="pca_bn", **bn)(pca)
        parts.append(layers.Dense(first, use_bias=False, kernel_initializer="zeros", name="dense1_pca")(pca))
    if config.use_global_features:
        inputs["global_features"] = keras.Input((global_steps, GLOBAL_FEATURE_DIM), name="global_features")
        branch = global_feature_branch(inputs["global_features"], config.gru_units, config.bn_momentum, name="global")
        parts.append(layers.Dense(first, use_bias=False, name="dense1_global")(branch))
    if config.use_length:
        inputs["length"] = keras.Input((1,), name="length")
        parts.append(layers.Dense(first, use_bias=False, name="dense1_length")(inputs["length"]))
    x = parts[0] if len(parts) == 1 else layers.Add(name="dense1_sum")(parts)
    x = layers.Activation("relu", name="dense1_relu")(layers.BatchNormalization(name="dense1_bn", **bn)(x))
    for i, units in enumerate(options.dense_units[1:], start=2):
        x = layers.Dense(units, activation="relu", name=f"dense{i}")(x)
        x = layers.BatchNormalization(name=f"dense{i}_bn", **bn)(x)
    scores = classifier(x, n_classes, multilabel, config.dropout)
    suffix = "mel" if options.mel_only else "pca"
    return keras.Model(inputs, scores, name=f"mobilenet_{suffix}")
