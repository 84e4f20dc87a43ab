"""cnn9 family: builds, shapes, serialization, SavedModel export, registry and FLOPs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig, Recipe
from freesound_tf.models import build_cnn9, build_model, forward_flops, get, list_models, model_summary_rows
from freesound_tf.models import registry
from freesound_tf.models.cnn9 import VARIANTS

TINY = {"stem_width": 8, "block_widths": (8, 8, 8, 8), "gru_units": 4}
N_CLASSES = 5


def _tiny(variant: str, **overrides) -> ModelConfig:
    return ModelConfig(variant=variant, **{**TINY, **overrides})


def _batch(seconds: float, sr: int, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"waveform": (0.1 * rng.standard_normal((batch, int(round(seconds * sr))))).astype(np.float32),
            "global_features": rng.standard_normal((batch, 128, 12)).astype(np.float32),
            "length": rng.uniform(0, 1, (batch, 1)).astype(np.float32)}


@pytest.mark.parametrize("seconds", [1.0, 5.0])
@pytest.mark.parametrize("sr", [16000, 44100])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_builds_and_runs(variant: str, sr: int, seconds: float) -> None:
    model = build_cnn9(_tiny(variant), FrontendConfig(), N_CLASSES, sr, seconds)
    assert set(model.input) == {"waveform", "global_features", "length"}
    assert model.get_layer("frontend").output.shape[1] == -(-int(seconds * sr) // 512)
    scores = model.predict_on_batch(_batch(seconds, sr))
    assert scores.shape == (2, N_CLASSES)
    assert np.all((scores > 0) & (scores < 1))


@pytest.mark.parametrize("variant,w_ratio", [("v1mix", 1.0), ("max3exam", 1.0), ("se", 1.5), ("msc_se", 2.0)])
def test_full_size_shapes_at_5s_44k(variant: str, w_ratio: float) -> None:
    model = build_cnn9(ModelConfig(variant=variant, w_ratio=w_ratio), FrontendConfig(), 80, 44100, 5.0)
    assert model.get_layer("frontend").output.shape == (None, 431, 64, 1)
    assert model.get_layer("pixel_shuffle_head").input.shape == (None, 54, 8, int(512 * w_ratio))
    stem = model.get_layer("stem_concat" if variant == "msc_se" else "stem_conv").output.shape[-1]
    assert stem == (96 if variant == "msc_se" else 64)  # never scaled by w_ratio
    assert model.output.shape == (None, 80)


def test_single_label_uses_softmax_and_optional_inputs_drop() -> None:
    config = _tiny("v1mix", use_global_features=False, use_length=False)
    model = build_cnn9(config, FrontendConfig(), N_CLASSES, 16000, 1.0, multilabel=False)
    assert list(model.input) == ["waveform"]
    scores = model.predict_on_batch({"waveform": _batch(1.0, 16000)["waveform"]})
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def test_variable_length_input_accepts_any_length() -> None:
    model = build_cnn9(_tiny("se"), FrontendConfig(), N_CLASSES, 16000, input_seconds=None)
    for seconds in (0.5, 2.3):
        assert model.predict_on_batch(_batch(seconds, 16000)).shape == (2, N_CLASSES)


@pytest.mark.parametrize("options", [{"highway": True}, {"conv_cat": True}, {"conv_cat": True, "variant": "se"}])
def test_block_options_build_and_round_trip(options: dict, tmp_path: Path) -> None:
    config = _tiny(**{"variant": "v1mix", **options})
    model = build_cnn9(config, FrontendConfig(), N_CLASSES, 16000, 1.0)
    batch = _batch(1.0, 16000)
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(restored.predict_on_batch(batch), model.predict_on_batch(batch))


def test_bad_configs_fail_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match="model.variant"):
        build_cnn9(_tiny("resnet"), FrontendConfig(), N_CLASSES, 16000, 1.0)
    with pytest.raises(ConfigError, match="frontend.n_mels"):
        build_cnn9(_tiny("se"), FrontendConfig(n_mels=40), N_CLASSES, 16000, 1.0)
    with pytest.raises(ConfigError, match="model.pooling"):
        ModelConfig(pooling="mean")


def test_pooling_override_changes_the_model() -> None:
    model = build_cnn9(_tiny("v1mix", pooling="avemax2"), FrontendConfig(), N_CLASSES, 16000, 1.0)
    assert "block1_pool_avg_mel" in [layer.name for layer in model.layers]


# One model per variant with every frontend option on (trainable filterbank, deltas, frequency
# map, SpecAugment), saved, reloaded and exported once.
EXPORT_FRONTEND = FrontendConfig(trainable_filterbank=True, deltas=True, frequency_encoding=True,
                                 time_masks=1, time_mask_width=4, freq_masks=1, freq_mask_width=4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[keras.Model, Path]]:
    root = tmp_path_factory.mktemp("export")
    models = {}
    for variant in sorted(VARIANTS):
        model = build_cnn9(_tiny(variant), EXPORT_FRONTEND, N_CLASSES, 16000, input_seconds=None)
        model.export(root / variant, format="tf_saved_model", verbose=False)
        models[variant] = (model, root)
    return models


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_keras_file_round_trip_is_identical(variant: str, exported, tmp_path: Path) -> None:
    model, _ = exported[variant]
    batch = _batch(1.3, 16000)
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(restored.predict_on_batch(batch), model.predict_on_batch(batch))


_LOAD_EXPORTS = """
import json, sys
import numpy as np
import tensorflow as tf
root, names = sys.argv[1], sys.argv[2:]
batch = dict(np.load(root + "/batch.npz"))
loaded = {name: tf.saved_model.load(root + "/" + name) for name in names}  # keep them alive while serving
scores = {name: model.serve(batch).numpy().tolist() for name, model in loaded.items()}
leaked = [m for m in sys.modules if m.split(".")[0] in ("freesound_tf", "kapre")]
print(json.dumps({"scores": scores, "leaked": leaked}))
"""


def test_saved_model_serves_without_freesound_tf_or_kapre(exported) -> None:
    root = next(iter(exported.values()))[1]
    batch = _batch(2.1, 16000, batch=3, seed=5)
    np.savez(root / "batch.npz", **batch)
    names = sorted(exported)
    result = subprocess.run([sys.executable, "-c", _LOAD_EXPORTS, str(root), *names],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["leaked"] == []
    for name in names:
        expected = exported[name][0].predict_on_batch(batch)
        np.testing.assert_allclose(np.array(served["scores"][name]), expected, rtol=1e-5, atol=1e-6)


def test_registry_and_build_model_from_recipe() -> None:
    assert "cnn9" in list_models()
    assert get("cnn9") is build_cnn9
    with pytest.raises(ConfigError, match="unknown model 'nope'.*cnn9"):
        get("nope")
    recipe = Recipe(model=_tiny("max3exam"))
    fixed = build_model(recipe, n_classes=N_CLASSES)
    assert fixed.input["waveform"].shape == (None, 5 * 44100)
    assert build_model(recipe, n_classes=N_CLASSES, variable_length=True).input["waveform"].shape == (None, None)


def _conv_flops(model: keras.Model) -> int:
    """Independent count: 2 x output positions x kernel area x in x out channels, per Conv2D."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, t, m, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            total += 2 * t * m * kh * kw * layer.input.shape[-1] * c_out
    return total


def test_flops_of_known_layers() -> None:
    inp = keras.Input((10,))
    assert forward_flops(keras.Model(inp, keras.layers.Dense(7)(inp))) == 2 * 10 * 7 + 7  # matmul + bias
    image = keras.Input((16, 12, 3))
    conv = keras.Model(image, keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(image))
    assert forward_flops(conv) == 2 * 16 * 12 * 9 * 3 * 4


def test_flops_of_a_cnn9_are_dominated_by_its_convolutions() -> None:
    model = build_cnn9(ModelConfig(variant="se", block_widths=(32, 32, 64, 64), stem_width=16),
                       FrontendConfig(), N_CLASSES, 16000, 1.0)
    convs = _conv_flops(model)
    assert convs < forward_flops(model) < 1.2 * convs
    with pytest.raises(ValueError, match="variable shape"):
        forward_flops(build_cnn9(_tiny("se"), FrontendConfig(), N_CLASSES, 16000, None))


def test_model_summary_rows_cover_every_preset(monkeypatch) -> None:
    monkeypatch.setitem(registry._PRESETS, "cnn9", {"tiny_se": _tiny("se"), "tiny_v1mix": _tiny("v1mix")})
    rows = model_summary_rows(1.0, 16000, N_CLASSES, names=["cnn9"])
    assert [row["name"] for row in rows] == ["cnn9/tiny_se", "cnn9/tiny_v1mix"]
    for row in rows:
        model = build_cnn9(_tiny(row["variant"].removeprefix("tiny_")), FrontendConfig(), N_CLASSES, 16000, 1.0)
        assert row["params"] == model.count_params()
        assert row["flops"] == forward_flops(model)
