"""Seed-000 deep-supervised CNNs (ds_cnn2d, ds_cnn1d): shapes, deep supervision against numpy,
aggregation modes, options, recipes and the shared conformance checks."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig, load_recipe
from freesound_tf.losses import LSEPLoss
from freesound_tf.models import build_model, get, presets
from tests.models.conformance import assert_keras_round_trip, assert_serves_without_library, train_one_step

ROOT = Path(__file__).resolve().parents[2]
SR = 16000
N_CLASSES = 5
FRONTEND_2D = FrontendConfig(n_fft=512, hop_length=256, n_mels=32, frequency_encoding=True)
TINY = {"num_conv_blocks": 3, "conv_base_depth": 4, "growth_rate": 1.5, "hidden_units": 8}
WIDTHS = (4, 6, 9)  # 4 * 1.5**i, floored


def _config(name: str, side_inputs: bool = False, **options) -> ModelConfig:
    return ModelConfig(name=name, use_global_features=side_inputs, use_length=side_inputs, gru_units=4,
                       options={**TINY, **options})


def _build(name: str, seconds: float | None = 1.0, multilabel: bool = True, side_inputs: bool = False,
           **options) -> keras.Model:
    frontend = FRONTEND_2D if name == "ds_cnn2d" else FrontendConfig()
    return get(name)(_config(name, side_inputs, **options), frontend, N_CLASSES, SR, seconds, multilabel)


def _batch(seconds: float, batch: int = 2, seed: int = 0, side_inputs: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"waveform": (0.1 * rng.standard_normal((batch, int(round(seconds * SR))))).astype(np.float32)}
    if side_inputs:
        out["global_features"] = rng.standard_normal((batch, 128, 12)).astype(np.float32)
        out["length"] = rng.uniform(0, 1, (batch, 1)).astype(np.float32)
    return out


def _outputs(model: keras.Model, names: list[str], batch) -> list[np.ndarray]:
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    return [np.asarray(o) for o in probe.predict_on_batch(batch)]


@pytest.mark.parametrize("name,frontend_shape,pooled", [
    ("ds_cnn2d", (63, 32, 2), [(32, 16, 4), (16, 8, 6), (8, 4, 9)]),  # 1 s / hop 256; mel + frequency map
    ("ds_cnn1d", (125, 129), [(63, 4), (32, 6), (16, 9)]),  # 1 s / hop 128; 129 bins as channels
])
def test_shapes_and_max_deep_supervision_against_numpy(name: str, frontend_shape, pooled) -> None:
    model = _build(name, start_deep_supervision_on=1)
    assert model.get_layer("frontend").output.shape[1:] == frontend_shape
    assert [model.get_layer(f"block{i}_pool").output.shape[1:] for i in (1, 2, 3)] == pooled
    assert model.get_layer("deep_supervision").output.shape[-1] == sum(WIDTHS[1:])
    blocks = _outputs(model, ["block2_pool", "block3_pool", "deep_supervision"], _batch(1.0))
    axes = tuple(range(1, blocks[0].ndim - 1))
    expected = np.concatenate([blocks[0].max(axis=axes), blocks[1].max(axis=axes)], axis=-1)
    np.testing.assert_allclose(blocks[2], expected, rtol=1e-6)
    assert model.output.shape == (None, N_CLASSES)


@pytest.mark.parametrize("start", [0, 2])
def test_feature_size_is_the_sum_of_supervised_widths(start: int) -> None:
    for aggregation in ("max", "rnn"):
        model = _build("ds_cnn2d", start_deep_supervision_on=start, aggregation=aggregation)
        size = model.get_layer("head_hidden").input.shape[-1]
        assert size == sum(WIDTHS[start:]), aggregation


def test_rnn_aggregation_is_a_gru_over_the_frequency_mean() -> None:
    model = _build("ds_cnn2d", aggregation="rnn")
    grus = [layer for layer in model.layers if isinstance(layer, keras.layers.Bidirectional)]
    assert [g.forward_layer.units for g in grus] == list(WIDTHS[1:])
    block, squeezed, sequence, pooled = _outputs(
        model, ["block2_pool", "block2_agg_squeeze", "block2_agg_bigru", "block2_agg_max"], _batch(1.0))
    np.testing.assert_allclose(squeezed, block.mean(axis=2), rtol=1e-5, atol=1e-6)
    assert sequence.shape == (2, block.shape[1], WIDTHS[1])
    np.testing.assert_allclose(pooled, sequence.max(axis=1), rtol=1e-6)
    max_model = _build("ds_cnn2d", aggregation="max")
    assert not any(isinstance(layer, keras.layers.Bidirectional) for layer in max_model.layers)


@pytest.mark.parametrize("name", ["ds_cnn2d", "ds_cnn1d"])
def test_single_label_softmax(name: str) -> None:
    scores = _build(name, multilabel=False).predict_on_batch(_batch(1.0))
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name,aggregation", [("ds_cnn2d", "max"), ("ds_cnn1d", "rnn")])
def test_variable_length_matches_the_fixed_length_model(name: str, aggregation: str) -> None:
    fixed = _build(name, 1.0, aggregation=aggregation, residual=True, start_deep_supervision_on=2)
    free = _build(name, None, aggregation=aggregation, residual=True, start_deep_supervision_on=2)
    free.set_weights(fixed.get_weights())
    batch = _batch(1.0)
    np.testing.assert_allclose(free.predict_on_batch(batch), fixed.predict_on_batch(batch), rtol=1e-5, atol=1e-6)
    for seconds in (0.2, 1.7):
        assert free.predict_on_batch(_batch(seconds)).shape == (2, N_CLASSES)


@pytest.mark.parametrize("name,options,key", [
    ("ds_cnn2d", {"aggregation": "mean"}, "model.options.aggregation"),
    ("ds_cnn2d", {"start_deep_supervision_on": 3}, "model.options.start_deep_supervision_on"),
    ("ds_cnn2d", {"num_conv_blocks": "5"}, "model.options.num_conv_blocks"),
    ("ds_cnn2d", {"output_dropout": 1.0}, "model.options.output_dropout"),
    ("ds_cnn2d", {"n_fft": 256}, "model.options.n_fft: unknown key"),
    ("ds_cnn1d", {"hop_length": 512}, "model.options.hop_length"),
    ("ds_cnn1d", {"growth_rate": 0.5}, "model.options.growth_rate"),
])
def test_bad_options_fail_naming_the_key(name: str, options: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        _build(name, **options)


def test_bad_frontend_and_name_fail_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="frontend.frequency_encoding"):
        get("ds_cnn1d")(_config("ds_cnn1d"), FRONTEND_2D, N_CLASSES, SR, 1.0)
    with pytest.raises(ConfigError, match="model.name"):
        get("ds_cnn1d")(_config("ds_cnn2d"), FrontendConfig(), N_CLASSES, SR, 1.0)


@pytest.mark.parametrize("path,model,aggregation", [
    ("models/ds_cnn2d.toml", "ds_cnn2d", "max"), ("models/ds_rnn2d.toml", "ds_cnn2d", "rnn"),
    ("models/ds_cnn1d.toml", "ds_cnn1d", "max"),
])
def test_full_size_recipes_load_and_build_at_tiny_scale(path: str, model: str, aggregation: str) -> None:
    recipe = load_recipe(ROOT / path)
    assert (recipe.model.name, recipe.model.options["aggregation"]) == (model, aggregation)
    assert (recipe.train.loss, recipe.train.tta, recipe.pipeline.mixup_label_rule) == ("lsep", "full", "or")
    assert (recipe.train.finetune.lr_schedule, recipe.train.pretrain.epochs) == ("one_cycle", 0)
    assert recipe.augment.p_effects == 0.75 and recipe.pipeline.crop_mode == "whole"  # tests/fidelity: the rest
    assert recipe.frontend.frequency_encoding == (model == "ds_cnn2d")
    model_config = dataclasses.replace(recipe.model, options={**recipe.model.options, **TINY})
    tiny = dataclasses.replace(recipe, model=model_config,
                               pipeline=dataclasses.replace(recipe.pipeline, crop_seconds=0.5))
    net = build_model(tiny, n_classes=N_CLASSES)
    assert net.input["waveform"].shape == (None, 22050)
    assert net.get_layer("deep_supervision").output.shape[-1] == sum(WIDTHS[1:])


@pytest.mark.parametrize("path", ["bench/recipes/ds_cnn2d_cpu.toml", "bench/recipes/ds_cnn1d_cpu.toml"])
def test_cpu_recipes_build_small(path: str) -> None:
    recipe = load_recipe(ROOT / path)
    assert (recipe.audio.sample_rate, recipe.train.loss, recipe.pipeline.mixup_label_rule) == (16000, "lsep", "or")
    net = build_model(recipe, n_classes=10)
    assert net.count_params() < 150_000
    assert net.predict_on_batch(_batch(2.0)).shape == (2, 10)


def test_presets_are_registered() -> None:
    assert sorted(presets("ds_cnn2d")) == sorted(presets("ds_cnn1d")) == ["max", "rnn"]


def test_conformance_train_round_trip_and_serving(tmp_path: Path) -> None:
    # Variable-length models; one GRU only (start 2) because RNN train steps are slow to trace.
    cases = {
        "ds_cnn2d_max": ("ds_cnn2d", {"aggregation": "max"}, False),
        "ds_cnn2d_rnn": ("ds_cnn2d", {"aggregation": "rnn", "start_deep_supervision_on": 2, "residual": True,
                                      "output_dropout": 0.3}, False),
        "ds_cnn1d_max": ("ds_cnn1d", {"aggregation": "max", "residual": True}, True),
    }
    labels = np.array([[1, 0, 0, 1, 0], [0, 1, 0, 0, 0]], np.float32)
    served = {}
    for key, (name, options, side_inputs) in cases.items():
        model = _build(name, None, side_inputs=side_inputs, **options)
        batch = _batch(1.3, seed=3, side_inputs=side_inputs)
        train_one_step(model, batch, labels, loss=LSEPLoss())
        assert_keras_round_trip(model, batch, tmp_path)
        served[key] = (model, batch)
    assert_serves_without_library(served, tmp_path / "export")
