"""Seed 004's cnn9 members as its models.py builds them: stem, SE layers, block layout, pooling,
GRU-branch batch norm, output size and parameter count (tests/fidelity/seed004.py)."""
from __future__ import annotations

import keras
import pytest

from freesound_tf.models import build_model
from tests.fidelity.seed004 import ARCHITECTURE, MEMBERS, recipe, seed_param_count


@pytest.fixture(scope="module")
def models() -> dict[str, keras.Model]:
    return {member: build_model(recipe(member), n_classes=80) for member in MEMBERS}


def _names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers]


@pytest.mark.parametrize("member", MEMBERS)
def test_stem_se_layers_and_last_block_size(member: str, models) -> None:
    model = models[member]
    stem, se, w_ratio = ARCHITECTURE[member]
    if stem == "msc":  # 3x3, 5x5, 7x7 convs of 32 channels each, never scaled
        assert [model.get_layer(f"stem_conv{k}").filters for k in (3, 5, 7)] == [32, 32, 32]
        assert model.get_layer("stem_bn").input.shape[-1] == 96
    else:  # 64 channels, never scaled
        assert model.get_layer("stem_conv").filters == 64
    se_layers = [name for name in _names(model) if name.endswith("_se_scale")]
    assert len(se_layers) == (9 if se else 0)  # after the stem and after each of the 8 block convs
    if se:
        assert se_layers[0] == "stem_se_scale"
    assert model.get_layer("pixel_shuffle_head").input.shape == (None, 54, 8, int(512 * w_ratio))
    assert model.input["waveform"].shape == (None, 5 * 44100)


@pytest.mark.parametrize("member", ["se", "v1mix"])
def test_block_layout_conv_bn_relu_se_pool_conv_bn_relu_se_avemax(member: str, models) -> None:
    names = _names(models[member])
    block = [n for n in names if n.startswith("block2_")]
    se = ARCHITECTURE[member][1]
    expected = ["block2_1_conv", "block2_1_bn", "block2_1_relu"]
    expected += ["block2_1_se_squeeze", "block2_1_se_reduce", "block2_1_se_expand", "block2_1_se_scale"] if se else []
    expected += ["block2_smooth", "block2_2_conv", "block2_2_bn", "block2_2_relu"]
    expected += ["block2_2_se_squeeze", "block2_2_se_reduce", "block2_2_se_expand", "block2_2_se_scale"] if se else []
    expected += ["block2_pool_avg_time", "block2_pool_max_mel"]  # avemax1: average over time, then max over mel
    assert block == expected
    smooth = models[member].get_layer("block2_smooth")
    assert (smooth.pool_size, smooth.strides) == ((3, 3), (1, 1))
    assert not any(n.startswith("block4_smooth") or n.startswith("block4_pool") for n in names)  # last: unpooled


def test_max3exam_pools_max_over_mel_then_average_over_time(models) -> None:
    names = _names(models["max3exam"])
    first, second = names.index("block1_pool_max_mel"), names.index("block1_pool_avg_time")
    assert first < second
    assert models["max3exam"].get_layer("block1_pool_max_mel").pool_size == (1, 2)


@pytest.mark.parametrize("member", MEMBERS)
def test_global_feature_branch_batch_norm_momentum_is_keras_default(member: str, models) -> None:
    assert models[member].get_layer("global_bn").momentum == pytest.approx(0.99)
    assert models[member].get_layer("stem_bn").momentum == pytest.approx(0.85)


@pytest.mark.parametrize("member", MEMBERS)
def test_parameter_count_is_the_seeds_without_the_biases_before_batch_norm(member: str, models) -> None:
    seed_total, dead_biases = seed_param_count(member)
    assert models[member].count_params() == seed_total - dead_biases, (member, seed_total)
