"""resnext (seed 003): shapes, grouped convolutions (parameters and FLOPs by formula), variable length,
conformance, options, presets and the recipes."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig, load_recipe
from freesound_tf.models import build_model, forward_flops, get, presets
from freesound_tf.models.resnext import GroupedConv2D
from tests.models.conformance import assert_keras_round_trip, assert_serves_without_library, train_one_step

SR = 8000
FRONTEND = FrontendConfig(n_fft=256, hop_length=128, n_mels=32, deltas=True, time_masks=1, freq_masks=1)
N_CLASSES = 5
ROOT = Path(__file__).resolve().parents[2]


def _config(cardinality: int = 2, bottleneck_width: int = 2, depths=(2, 1, 1), **model) -> ModelConfig:
    model = {"use_global_features": False, "use_length": False, **model}
    options = {"depths": list(depths), "cardinality": cardinality, "bottleneck_width": bottleneck_width,
               "base_width": 4}
    return ModelConfig(name="resnext", options=options, **model)


def _build(config: ModelConfig, seconds: float | None = 1.0, multilabel: bool = True) -> keras.Model:
    return get("resnext")(config, FRONTEND, N_CLASSES, SR, input_seconds=seconds, multilabel=multilabel)


def _batch(seconds: float, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"waveform": (0.1 * rng.standard_normal((batch, int(round(seconds * SR))))).astype(np.float32),
            "global_features": rng.standard_normal((batch, 128, 12)).astype(np.float32),
            "length": rng.uniform(0, 1, (batch, 1)).astype(np.float32)}


def _expected_params(depths, cardinality: int, width: int, base: int, channels: int, n_classes: int) -> int:
    """Trainable + BN-statistics parameters of the body and classifier, counted from the architecture."""
    def conv_bn(k: int, cin: int, cout: int, groups: int = 1) -> int:
        return k * k * (cin // groups) * cout + 4 * cout

    total, cin = conv_bn(7, channels, base), base
    for i, depth in enumerate(depths):
        inner, out = cardinality * width * 2 ** i, 4 * base * 2 ** i
        for j in range(depth):
            total += conv_bn(1, cin, inner) + conv_bn(3, inner, inner, cardinality) + conv_bn(1, inner, out)
            if j == 0:
                total += conv_bn(1, cin, out)  # projection shortcut (stride 2 or wider output)
            cin = out
    return total + cin * n_classes + n_classes


def test_shapes_with_deltas_and_stage_widths() -> None:
    model = _build(_config())
    # 1 s at 8 kHz, hop 128 -> 63 frames x 32 mels x (log-mel, delta, delta-delta).
    assert model.get_layer("frontend").output.shape == (None, 63, 32, 3)
    assert model.get_layer("stem_pool").output.shape == (None, 16, 8, 4)
    assert model.get_layer("stage1_block2_out").output.shape == (None, 16, 8, 16)
    assert model.get_layer("stage2_block1_group_conv").output.shape == (None, 8, 4, 8)
    assert model.get_layer("stage3_block1_out").output.shape == (None, 4, 2, 64)
    scores = model.predict_on_batch({"waveform": _batch(1.0)["waveform"]})
    assert scores.shape == (2, N_CLASSES) and np.all((scores > 0) & (scores < 1))


@pytest.mark.parametrize("cardinality,width", [(1, 8), (4, 2), (8, 1)])
def test_cardinality_groups_the_3x3_convs(cardinality: int, width: int) -> None:
    model = _build(_config(cardinality, width))
    conv = model.get_layer("stage2_block1_group_conv")
    inner = cardinality * width * 2
    assert conv.kernel.shape == (3, 3, inner // cardinality, inner)
    body = model.count_params() - model.get_layer("frontend").count_params()
    assert body == _expected_params((2, 1, 1), cardinality, width, 4, 3, N_CLASSES)


def test_forward_flops_counts_grouped_convs() -> None:
    # Same inner widths (8, 16, 32), one with groups of 2 channels: only the 3x3 convs differ, by 3/4.
    plain, grouped = _build(_config(1, 8)), _build(_config(4, 2))
    expected = 0
    for layer in grouped.layers:
        if layer.name.endswith("_group_conv"):
            _, h, w, c = layer.output.shape
            expected += 2 * h * w * 9 * c * c * 3 // 4
    assert forward_flops(plain) - forward_flops(grouped) == expected


def test_variable_length_matches_fixed_length() -> None:
    config = _config()
    fixed, variable = _build(config, 1.0), _build(config, None)
    variable.set_weights(fixed.get_weights())
    wave = {"waveform": _batch(1.0)["waveform"]}
    np.testing.assert_allclose(variable.predict_on_batch(wave), fixed.predict_on_batch(wave), rtol=1e-5, atol=1e-6)
    for seconds in (0.2, 2.3):
        assert variable.predict_on_batch({"waveform": _batch(seconds)["waveform"]}).shape == (2, N_CLASSES)


def test_conformance_train_round_trip_and_serving(tmp_path: Path) -> None:
    side = _config(4, 1, use_global_features=True, use_length=True, gru_units=4, dropout=0.2)
    models = {"resnext_side": (_build(side, 1.0), _batch(1.0)),
              "resnet_var_softmax": (_build(_config(1, 4), None, multilabel=False),
                                     {"waveform": _batch(1.7, batch=3, seed=4)["waveform"]})}
    labels = np.eye(N_CLASSES, dtype=np.float32)[[1, 2]]
    for name, (model, batch) in models.items():
        loss = "binary_crossentropy" if name == "resnext_side" else "categorical_crossentropy"
        train_one_step(model, batch, np.resize(labels, (len(batch["waveform"]), N_CLASSES)), loss)
        assert_keras_round_trip(model, batch, tmp_path)
    assert_serves_without_library(models, tmp_path / "served")
    for name in models:  # Keras' own grouped Conv2D would need XLA, which TF Serving disables on CPU
        assert b"_XlaMustCompile" not in (tmp_path / "served" / name / "saved_model.pb").read_bytes()


def test_grouped_conv_equals_keras_grouped_conv() -> None:
    x = np.random.default_rng(3).standard_normal((2, 9, 6, 8)).astype(np.float32)
    ours = GroupedConv2D(12, 3, strides=2, padding="same", groups=4)
    keras_conv = keras.layers.Conv2D(12, 3, strides=2, padding="same", groups=4)
    ours.build(x.shape)
    keras_conv.build(x.shape)
    assert ours.kernel.shape == (3, 3, 2, 12)
    keras_conv.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(x).numpy(), keras_conv(x).numpy(), rtol=1e-5, atol=1e-5)
    # Group g's outputs see only group g's inputs: zeroing group 0's input changes outputs 0..2 only.
    changed = np.abs(ours(x).numpy() - ours(np.concatenate([0 * x[..., :2], x[..., 2:]], -1)).numpy()) > 0
    assert changed[..., :3].any() and not changed[..., 3:].any()


def test_options_fail_naming_the_key() -> None:
    for options, key in [({"cardinality": 0}, "cardinality"), ({"depths": []}, "depths"),
                         ({"depths": [2, 0]}, "depths"), ({"groups": 32}, "groups"),
                         ({"bottleneck_width": "4"}, "bottleneck_width"), ({"bn_momentum": 1.0}, "bn_momentum")]:
        with pytest.raises(ConfigError, match=f"model.options.{key}"):
            _build(ModelConfig(name="resnext", options=options))


def test_presets() -> None:
    found = presets("resnext")
    assert sorted(found) == ["resnet50", "resnext50_32x4d"]
    assert found["resnet50"].options == {"cardinality": 1, "bottleneck_width": 64}
    assert found["resnext50_32x4d"].options == {"cardinality": 32, "bottleneck_width": 4}


@pytest.mark.parametrize("path", ["models/resnet50.toml", "models/resnext50.toml", "bench/recipes/resnext_cpu.toml"])
def test_recipes_load_and_build(path: str) -> None:
    recipe = load_recipe(ROOT / path)
    assert recipe.model.name == "resnext" and recipe.frontend.deltas
    assert recipe.train.tta == "multi_length" and recipe.train.tta_combine == "gmean"
    assert recipe.train.retrain_on_val_epochs > 0 and recipe.train.calibration == "temperature"
    sr, hop = recipe.audio.sample_rate, recipe.frontend.hop_length
    frames = -(-int(round(recipe.pipeline.crop_seconds * sr)) // hop)
    if path.startswith("models/"):  # FAT2018: single-label, 150-frame crops, 5 folds
        assert recipe.train.loss == "cce" and frames == 150 and recipe.folds.n_splits == 5
        assert recipe.train.tta_lengths == (recipe.pipeline.crop_seconds,)
    model = build_model(recipe, n_classes=41, multilabel=False)
    assert model.get_layer("frontend").output.shape[1:] == (frames, recipe.frontend.n_mels, 3)
    assert list(model.input) == ["waveform"] and model.output.shape == (None, 41)
    keras.backend.clear_session()
