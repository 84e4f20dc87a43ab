"""mobilenet_pca (seed 002): shapes, in-graph clip statistics vs numpy, PCA vs scikit-learn, adapt_model,
stage-1 -> stage-2 initialisation, recipes and the shared conformance checks."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats as sps
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig, load_recipe
from freesound_tf.layers.pca import PCAProjection
from freesound_tf.layers.summary_stats import ClipSummaryStats, summary_stats_size
from freesound_tf.models import build_model, get, presets
from freesound_tf.models.mobilenet_pca import PadFrames
from freesound_tf.training.adapt import adaptable_layers, adapt_model
from freesound_tf.training.init_weights import copy_matching_layers
from tests.models.conformance import assert_keras_round_trip, assert_serves_without_library, train_one_step

ROOT = Path(__file__).resolve().parents[2]
SR = 8000
N_CLASSES = 5
FRONTEND = FrontendConfig(n_fft=256, hop_length=128, n_mels=32, random_erasing=1.0)
TINY = {"alpha": 0.1, "dense_units": [16, 8], "adapter_channels": 4}


def _config(**options) -> ModelConfig:
    return ModelConfig(name="mobilenet_pca", use_global_features=False, use_length=False,
                       options={**TINY, **options})


def _build(seconds: float | None = None, **options) -> keras.Model:
    return get("mobilenet_pca")(_config(**options), FRONTEND, N_CLASSES, SR, seconds, multilabel=False)


def _waves(n: int, seconds: float = 1.0, seed: int = 0, tilt: float = 0.0) -> np.ndarray:
    """Noise with a random level per clip; ``tilt`` > 0 adds a low tone (another distribution)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    level = rng.uniform(0.01, 0.5, (n, 1))
    tone = tilt * np.sin(2 * np.pi * rng.uniform(100, 300, (n, 1)) * t)
    return (level * rng.standard_normal((n, len(t))) + tone).astype(np.float32)


@pytest.fixture(scope="module")
def models() -> dict[str, keras.Model]:
    """Variable-length mel-only and full models; the full one adapted on 12 clips."""
    full = _build(pca_components=8)
    adapt_model(full, {"waveform": _waves(12)})
    return {"mel": _build(mel_only=True), "full": full}


def test_shapes_layers_and_softmax(models) -> None:
    mel, full = models["mel"], models["full"]
    assert list(full.input) == list(mel.input) == ["waveform"]
    assert full.get_layer("summary_stats").output.shape == (None, summary_stats_size(32)) == (None, 7 * 32 + 10)
    assert full.get_layer("pca").output.shape == (None, 8)
    assert {"summary_stats", "pca", "dense1_pca"}.isdisjoint(layer.name for layer in mel.layers)
    assert full.get_layer("mobilenetv2").input.shape == (None, None, 32, 3)
    for seconds in (0.05, 1.3):  # 4 frames are padded to 32; 82 pass unchanged
        scores = full.predict_on_batch({"waveform": _waves(2, seconds)})
        assert scores.shape == (2, N_CLASSES)
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    fixed = _build(1.0, pca_components=1000)
    assert fixed.input["waveform"].shape == (None, SR)
    assert fixed.get_layer("pca").output.shape == (None, summary_stats_size(32))  # capped at the statistics


def test_short_spectrograms_are_padded_with_the_floor() -> None:
    x = np.random.default_rng(5).uniform(-80, 0, (2, 40, 8, 1)).astype(np.float32)
    layer = PadFrames(32, -80.0)
    np.testing.assert_array_equal(layer(x), x)
    short = np.asarray(layer(x[:, :5]))
    assert short.shape == (2, 32, 8, 1)
    np.testing.assert_array_equal(short[:, :5], x[:, :5])
    assert np.all(short[:, 5:] == -80.0)
    assert PadFrames.from_config(layer.get_config()).get_config() == layer.get_config()


def test_statistics_come_from_the_clean_log_mel(models) -> None:
    full = models["full"]
    stats = keras.Model(full.inputs, [full.get_layer("summary_stats").output, full.get_layer("pad_frames").input])
    waves = {"waveform": _waves(3)}
    (s_train, mel_train), (s_eval, mel_eval) = stats(waves, training=True), stats(waves, training=False)
    assert not np.array_equal(mel_train, mel_eval)  # random erasing (every clip in training)
    np.testing.assert_array_equal(s_train, s_eval)


def _numpy_stats(wave: np.ndarray, logmel: np.ndarray, frame: int, hop: int) -> np.ndarray:
    db = logmel[..., 0].astype(np.float64)
    n_mels = db.shape[-1]
    std = db.std(axis=1)
    skew, kurt = sps.skew(db, axis=1), sps.kurtosis(db, axis=1)
    skew[std < 1e-3], kurt[std < 1e-3] = 0.0, 0.0
    bands = [db.mean(1), std, db.min(1), db.max(1), skew, kurt, np.abs(np.diff(db, axis=1)).mean(1)]
    n_frames = -(-wave.shape[1] // hop)
    padded = np.pad(wave.astype(np.float64), ((0, 0), (0, (n_frames - 1) * hop + frame - wave.shape[1])))
    frames = np.stack([padded[:, i * hop:i * hop + frame] for i in range(n_frames)], axis=1)
    sign = frames >= 0
    power = 10.0 ** (db / 10.0)
    total = power.sum(-1)
    features = [
        10 * np.log10((frames ** 2).mean(-1) + 1e-10),
        (sign[..., 1:] != sign[..., :-1]).mean(-1),
        (power * np.linspace(0, 1, n_mels)).sum(-1) / total,
        np.argmax(np.cumsum(power, -1) >= 0.85 * total[..., None], axis=-1) / (n_mels - 1),
        sps.gmean(power, axis=-1) / power.mean(-1),
    ]
    temporal = np.stack([s for f in features for s in (f.mean(1), f.std(1))], axis=-1)
    return np.concatenate(bands + [temporal], axis=-1)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy on the constant band
def test_summary_statistics_match_an_independent_numpy_computation() -> None:
    rng = np.random.default_rng(1)
    wave = (0.3 * rng.standard_normal((3, 1000))).astype(np.float32)
    logmel = rng.uniform(-60.0, 0.0, (3, 21, 32, 2)).astype(np.float32)
    logmel[:, :, 5, 0] = -80.0  # a silent band: skewness and kurtosis fall back to 0
    layer = ClipSummaryStats(256, 100)
    got = np.asarray(layer([wave, logmel]))
    assert got.shape == (3, summary_stats_size(32))
    np.testing.assert_allclose(got, _numpy_stats(wave, logmel, 256, 100), rtol=2e-4, atol=2e-4)
    # Graph mode with unknown lengths (the variable-length model) gives the same numbers.
    spec = [tf.TensorSpec((None, None)), tf.TensorSpec((None, None, 32, 2))]
    graph = tf.function(lambda w, m: layer([w, m]), input_signature=spec)
    np.testing.assert_allclose(graph(wave, logmel), got, rtol=1e-6, atol=1e-6)


def _pipeline(k: int, train: np.ndarray):
    return make_pipeline(StandardScaler(), PCA(k, svd_solver="full")).fit(train)


def test_pca_layer_equals_sklearn_after_adapt() -> None:
    rng = np.random.default_rng(2)
    train = rng.standard_normal((60, 12)) @ rng.standard_normal((12, 12)) * rng.uniform(0.1, 50, 12) + 7
    test = rng.standard_normal((9, 12)) @ rng.standard_normal((12, 12)) + 3
    layer = PCAProjection(5)
    assert np.all(np.asarray(layer(test.astype(np.float32))) == 0)  # unfitted: zeros
    layer.adapt(train)
    expected = _pipeline(5, train).transform(test)
    np.testing.assert_allclose(layer(test.astype(np.float32)), expected, rtol=1e-3, atol=1e-3)
    # Fewer clips than components: the first 6 outputs are PCA(6), the rest stay 0.
    small = PCAProjection(10)
    small(test.astype(np.float32))
    small.adapt(train[:6])
    out = np.asarray(small(test.astype(np.float32)))
    np.testing.assert_allclose(out[:, :6], _pipeline(6, train[:6]).transform(test), rtol=1e-3, atol=1e-3)
    assert np.all(out[:, 6:] == 0)
    with pytest.raises(ValueError, match=r"shape \(samples, 12\)"):
        layer.adapt(train[:, :11])


def test_adapt_model_fits_only_on_the_given_inputs() -> None:
    model = _build(pca_components=6)
    features = keras.Model(model.inputs, model.get_layer("pca").input)
    train, other = _waves(10, seed=3), _waves(10, seed=4, tilt=0.8)
    # Batches of different lengths with labels, as a dataset of (inputs, labels) pairs.
    ds = tf.data.Dataset.from_tensor_slices(({"waveform": train}, np.zeros((10, N_CLASSES), np.float32))).batch(5)
    ds = ds.concatenate(tf.data.Dataset.from_tensors(({"waveform": _waves(3, 1.5, seed=5)},
                                                      np.zeros((3, N_CLASSES), np.float32))))
    adapt_model(model, ds)
    fit_stats = np.concatenate([np.asarray(features(x)) for x, _ in ds])
    assert len(fit_stats) == 13
    probe = np.asarray(features({"waveform": other}))
    got = model.get_layer("pca")(probe)
    np.testing.assert_allclose(got, _pipeline(6, fit_stats).transform(probe), rtol=1e-3, atol=1e-3)
    with_other = _pipeline(6, np.concatenate([fit_stats, probe])).transform(probe)
    assert not np.allclose(np.abs(got), np.abs(with_other), rtol=1e-2, atol=1e-2)
    assert adaptable_layers(_build(mel_only=True)) == []
    with pytest.raises(ValueError, match="no inputs"):
        adapt_model(model, [])


def test_stage_two_starts_from_stage_one_by_layer_name(models) -> None:
    mel, full = models["mel"], models["full"]
    copied = copy_matching_layers(full, mel)
    assert set(copied) == {layer.name for layer in mel.layers if layer.weights}
    waves = {"waveform": _waves(4, seed=9)}
    np.testing.assert_allclose(full.predict_on_batch(waves), mel.predict_on_batch(waves), rtol=1e-5, atol=1e-6)


def test_conformance_train_round_trip_and_serving(models, tmp_path: Path) -> None:
    # The full model holds every kind of layer the mel-only one has (checking both doubles a slow test).
    full, batch = models["full"], {"waveform": _waves(4, 1.2, seed=10)}
    train_one_step(full, batch, np.eye(N_CLASSES, dtype=np.float32)[:4], loss="categorical_crossentropy")
    assert_keras_round_trip(full, batch, tmp_path)
    assert_serves_without_library({"full": (full, batch)}, tmp_path)


@pytest.mark.parametrize("options,key", [
    ({"alpha": 0.0}, "model.options.alpha"), ({"pca_components": 0}, "model.options.pca_components"),
    ({"dense_units": []}, "model.options.dense_units"), ({"pca": 3}, "model.options.pca: unknown key"),
])
def test_bad_options_fail_naming_the_key(options: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        _build(**options)


def test_too_few_mel_bands_fail_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="frontend.n_mels"):
        get("mobilenet_pca")(_config(), FrontendConfig(n_mels=16), N_CLASSES, SR, None)


def test_recipes_load_and_build_at_tiny_scale() -> None:
    mel, full = load_recipe(ROOT / "models/mobilenet_pca_mel.toml"), load_recipe(ROOT / "models/mobilenet_pca.toml")
    assert mel.model.options["mel_only"] and not full.model.options.get("mel_only", False)
    assert full.train.init_from.endswith(mel.name) and not mel.train.init_from
    for recipe in (mel, full):
        assert (recipe.audio.sample_rate, recipe.train.loss) == (22050, "cce")
        assert recipe.pipeline.random_length_seconds  # tests/fidelity/test_seed002.py checks the values
        assert (recipe.train.tta, len(recipe.train.tta_lengths), recipe.train.tta_random_crops,
                recipe.train.tta_combine) == ("multi_length", 6, 5, "gmean")
        assert recipe.frontend.time_shift > 0 and recipe.pipeline.mixup_mode == "beta"
    tiny = dataclasses.replace(full, model=dataclasses.replace(full.model, options={**full.model.options, **TINY}))
    net = build_model(tiny, N_CLASSES, multilabel=False, variable_length=True)
    assert net.get_layer("pca").output.shape == (None, 350)


def test_cpu_recipe_and_presets_build_small() -> None:
    recipe = load_recipe(ROOT / "bench/recipes/mobilenet_pca_cpu.toml")
    assert recipe.audio.sample_rate == 16000 and recipe.pipeline.random_length_percentiles
    net = build_model(recipe, n_classes=10, multilabel=False, variable_length=True)
    assert net.count_params() < 400_000
    assert net.predict_on_batch({"waveform": _waves(2, 2.0)}).shape == (2, 10)
    assert sorted(presets("mobilenet_pca")) == ["mel_a1.0", "pca_a1.0"]
