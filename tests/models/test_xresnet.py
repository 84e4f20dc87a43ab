"""xresnet (seed 001): shapes per depth, ResNet-D shortcut, zero-init branches, SSA, variable length,
conformance, options and the recipes."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig, load_recipe
from freesound_tf.layers import SimpleSelfAttention
from freesound_tf.models import build_model, get, presets
from freesound_tf.models.xresnet import BLOCKS
from tests.models.conformance import assert_keras_round_trip, assert_serves_without_library, train_one_step

SR = 8000
FRONTEND = FrontendConfig(n_fft=256, hop_length=128, n_mels=32)  # 1 s -> 63 frames x 32 mels
N_CLASSES = 5
ROOT = Path(__file__).resolve().parents[2]


def _config(depth: int = 18, ssa: bool = False, **model) -> ModelConfig:
    model = {"use_global_features": False, "use_length": False, **model}
    options = {"depth": depth, "base_width": 4, "stem_widths": [4, 4, 8], "self_attention": ssa}
    return ModelConfig(name="xresnet", options=options, **model)


def _build(config: ModelConfig, seconds: float | None = 1.0) -> keras.Model:
    return get("xresnet")(config, FRONTEND, N_CLASSES, SR, input_seconds=seconds)


def _batch(seconds: float, batch: int = 2, seed: int = 0, side_inputs: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"waveform": (0.1 * rng.standard_normal((batch, int(round(seconds * SR))))).astype(np.float32)}
    if side_inputs:
        out.update(global_features=rng.standard_normal((batch, 128, 12)).astype(np.float32),
                   length=rng.uniform(0, 1, (batch, 1)).astype(np.float32))
    return out


@pytest.mark.parametrize("depth", sorted(BLOCKS))
def test_shapes_blocks_and_zero_init_per_depth(depth: int) -> None:
    model = _build(_config(depth))
    expansion = 4 if depth == 50 else 1
    # 63 x 32 -> stem conv /2 (32 x 16) -> max pool /2 (16 x 8) -> three stride-2 stages (2 x 1).
    assert model.get_layer("stem_pool").output.shape == (None, 16, 8, 8)
    last = f"stage4_block{BLOCKS[depth][-1]}_out"
    assert model.get_layer(last).output.shape == (None, 2, 1, 32 * expansion)
    assert model.get_layer("avg_max_pool").output.shape == (None, 64 * expansion)
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == sum(BLOCKS[depth])
    assert model(_batch(1.0)).shape == (2, N_CLASSES)
    # The last BN of every residual branch starts at gamma 0, every other BN at 1.
    branch_end = "_c_bn" if depth == 50 else "_b_bn"
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            expected = 0.0 if layer.name.endswith(branch_end) else 1.0
            np.testing.assert_array_equal(layer.gamma.numpy(), expected, err_msg=layer.name)


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_d_shortcut_is_avg_pool_then_1x1_conv(depth: int) -> None:
    model = _build(_config(depth))
    pool, conv = model.get_layer("stage2_block1_down_pool"), model.get_layer("stage2_block1_down_conv")
    assert isinstance(pool, keras.layers.AveragePooling2D) and pool.pool_size == (2, 2) and pool.strides == (2, 2)
    assert conv.kernel_size == (1, 1) and conv.strides == (1, 1)
    strided = model.get_layer("stage2_block1_b_conv" if depth == 50 else "stage2_block1_a_conv")
    assert strided.kernel_size == (3, 3) and strided.strides == (2, 2)
    # At initialisation the branch is zero (gamma 0), so the block computes ReLU(BN(conv1x1(avgpool(x)))).
    block = keras.Model(model.get_layer("stage1_block2_out" if depth == 18 else "stage1_block3_out").output,
                        model.get_layer("stage2_block1_out").output)
    _, t, m, c = block.input.shape  # (16, 8): even, so every 2x2 window is whole
    x = np.random.default_rng(1).standard_normal((1, t, m, c)).astype(np.float32)
    pooled = x.reshape(1, t // 2, 2, m // 2, 2, c).mean(axis=(2, 4))
    bn = model.get_layer("stage2_block1_down_bn")
    expected = np.maximum(np.einsum("btmc,cd->btmd", pooled, conv.kernel.numpy()[0, 0]) / math.sqrt(1 + bn.epsilon), 0)
    np.testing.assert_allclose(block(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_ssa_layer_is_identity_at_init_and_matches_its_formula() -> None:
    x = np.random.default_rng(2).standard_normal((2, 5, 3, 4)).astype(np.float32)
    layer = SimpleSelfAttention()
    np.testing.assert_array_equal(layer(x).numpy(), x)
    layer.gamma.assign(0.3)
    w = layer.kernel.numpy()
    expected = np.empty_like(x)
    for b in range(2):
        flat = x[b].reshape(-1, 4).astype(np.float64)  # (positions, channels)
        expected[b] = (flat + 0.3 * (flat @ w) @ (flat.T @ flat)).reshape(5, 3, 4)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_ssa_sits_in_the_last_block_of_stage1_changes_nothing_at_init_and_trains() -> None:
    plain, ssa = _build(_config(18)), _build(_config(18, ssa=True))
    attention = [layer.name for layer in ssa.layers if isinstance(layer, SimpleSelfAttention)]
    assert attention == ["stage1_block2_ssa"]
    # Same weights everywhere else, with the zero-init gammas set to 1 so the SSA input is not zero.
    for layer in plain.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(np.ones(layer.gamma.shape, np.float32))
        if layer.weights:
            ssa.get_layer(layer.name).set_weights(layer.get_weights())
    batch = _batch(1.0)
    np.testing.assert_allclose(ssa(batch).numpy(), plain(batch).numpy(), rtol=1e-6, atol=1e-7)
    gamma = ssa.get_layer("stage1_block2_ssa").gamma
    with tf.GradientTape() as tape:
        loss = keras.losses.binary_crossentropy(np.eye(N_CLASSES, dtype=np.float32)[[0, 3]], ssa(batch, training=True))
    assert gamma.trainable and abs(float(tape.gradient(loss, gamma))) > 0


def test_variable_length_matches_the_fixed_length_model() -> None:
    config = _config(18, ssa=True)
    fixed, variable = _build(config, 1.0), _build(config, None)
    variable.set_weights(fixed.get_weights())
    np.testing.assert_allclose(variable(_batch(1.0)).numpy(), fixed(_batch(1.0)).numpy(), rtol=1e-5, atol=1e-6)
    for seconds in (0.3, 2.7):
        assert variable(_batch(seconds)).shape == (2, N_CLASSES)


def test_side_inputs_follow_cnn9() -> None:
    model = _build(_config(18, use_global_features=True, use_length=True, gru_units=4, dropout=0.2))
    assert set(model.input) == {"waveform", "global_features", "length"}
    assert model.get_layer("head_concat").output.shape == (None, 64 + 4 + 1)
    assert model(_batch(1.0, side_inputs=True)).shape == (2, N_CLASSES)


def test_conformance_train_round_trip_and_serving(tmp_path: Path) -> None:
    """An SSA model with dropout, on variable-length input."""
    model, batch = _build(_config(18, ssa=True, dropout=0.2), None), _batch(1.7, batch=2, seed=4)
    train_one_step(model, batch, np.eye(N_CLASSES, dtype=np.float32)[[1, 2]])
    assert_keras_round_trip(model, batch, tmp_path)
    assert_serves_without_library({"xresnet18ssa": (model, batch)}, tmp_path / "served")


def test_options_fail_naming_the_key() -> None:
    bad = [({"depth": 101}, "depth"), ({"depht": 18}, "depht"), ({"self_attention": "yes"}, "self_attention"),
           ({"stem_widths": [8, 8]}, "stem_widths"), ({"upsample": 0}, "upsample")]
    for options, key in bad:
        with pytest.raises(ConfigError, match=f"model.options.{key}"):
            _build(ModelConfig(name="xresnet", options=options))


def test_presets_and_upsampling() -> None:
    assert sorted(presets("xresnet")) == sorted(f"xresnet{d}{s}" for d in (18, 34, 50) for s in ("", "ssa"))
    assert presets("xresnet")["xresnet50ssa"].options == {"depth": 50, "self_attention": True}
    config = _config(18)
    doubled = _build(replace(config, options={**config.options, "upsample": 2}))
    assert doubled.get_layer("stem_pool").output.shape == (None, 32, 16, 8)


@pytest.mark.parametrize("path", ["models/xresnet18ssa.toml", "models/xresnet34ssa.toml", "models/xresnet50.toml",
                                  "bench/recipes/xresnet_cpu.toml"])
def test_recipes_load_and_build(path: str) -> None:
    recipe = load_recipe(ROOT / path)
    assert recipe.model.name == "xresnet" and recipe.train.finetune.lr_schedule == "one_cycle"
    assert recipe.train.finetune.f2_below == 1.0 or recipe.train.f2_mask_below == 1.0
    model = build_model(recipe, n_classes=80)
    assert list(model.input) == ["waveform"] and model.output.shape == (None, 80)
    keras.backend.clear_session()
