"""The public API as notebooks use it: model builders with defaults and presets, waveform-only
models, `import freesound_tf` enough to load any saved model, run.predict on raw audio, packaged
recipes by name, and no matplotlib backend switch on import."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import soundfile as sf
import soxr

import freesound_tf
from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig, load_recipe, load_stacker_recipe
from freesound_tf.data.features import global_features, length_feature
from freesound_tf.models import build_cnn9, build_model
from tests.conftest import TINY_SR, tiny_recipe

REPO = Path(__file__).resolve().parents[1]


def test_build_cnn9_defaults_are_seed_004_se() -> None:
    model = build_cnn9()
    assert model.name == "cnn9_se" and model.output.shape == (None, 80)
    assert model.input["waveform"].shape == (None, 220500)  # 5 s at 44.1 kHz
    assert build_cnn9(n_classes=10, sample_rate=16000, input_seconds=1.0).output.shape == (None, 10)


def _same_model(a: keras.Model, b: keras.Model) -> bool:
    return a.name == b.name and a.count_params() == b.count_params() and \
        [layer.name for layer in a.layers] == [layer.name for layer in b.layers]


def test_build_cnn9_and_build_model_take_preset_names() -> None:
    wide = build_cnn9("msc_se_w2.0", n_classes=4, sample_rate=8000, input_seconds=1.0)
    assert _same_model(wide, build_cnn9(ModelConfig(variant="msc_se", w_ratio=2.0), FrontendConfig(), 4, 8000, 1.0))
    assert _same_model(build_model("se_w1.5", n_classes=4),
                       build_cnn9(ModelConfig(variant="se", w_ratio=1.5), FrontendConfig(), 4, 44100, 5.0))
    assert build_model("xresnet:xresnet18", n_classes=4).name.startswith("xresnet18")
    with pytest.raises(ConfigError, match="ds_cnn1d:max, ds_cnn2d:max"):
        build_model("max")
    with pytest.raises(ConfigError, match="unknown variant or preset 'se_w9'"):
        build_cnn9("se_w9")


def test_packaged_recipes_resolve_by_name_from_any_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # not the repository root
    assert load_recipe("se") == load_recipe(REPO / "models" / "se.toml")
    assert load_recipe("se.toml").name == "se"
    assert load_stacker_recipe("lc1d") == load_stacker_recipe(REPO / "stacking" / "lc1d.toml")
    assert build_model("demo", n_classes=3).name == "cnn9_se"  # build_model("<recipe name>")
    with pytest.raises(ConfigError, match=r"nope: member recipe not found; .*\bse\b"):
        load_recipe("nope")
    with pytest.raises(ConfigError, match=r"stacker recipe not found; .*lc1d"):
        load_stacker_recipe("se")  # a member name is not a stacker recipe
    (tmp_path / "mine.toml").write_text('name = "mine"\n')
    assert load_recipe("mine.toml").name == "mine"  # a file in the working folder wins


@pytest.fixture(scope="module")
def waveform_model(tmp_path_factory) -> tuple[keras.Model, Path]:
    recipe = tiny_recipe("wave", "se", use_global_features=True)
    model = build_model(recipe, n_classes=5, waveform_only=True)
    path = tmp_path_factory.mktemp("wave") / "wave.keras"
    model.save(path)
    return model, path


def test_waveform_only_model_predicts_from_audio_alone(waveform_model) -> None:
    model, _ = waveform_model
    waves = (0.2 * np.random.default_rng(1).standard_normal((3, TINY_SR))).astype(np.float32)
    got = model.predict(waves, verbose=0)
    # The wrapped model fed the side inputs the cache computes in numpy.
    inner = model.get_layer("cnn9_se")
    side = {"waveform": waves, "global_features": np.stack([global_features(w, 128) for w in waves]),
            "length": np.full((3, 1), length_feature(TINY_SR, TINY_SR, 10.0), np.float32)}
    np.testing.assert_allclose(got, inner.predict(side, verbose=0), atol=1e-5)


def test_waveform_only_model_keras_round_trip_is_exact(waveform_model) -> None:
    model, path = waveform_model
    waves = (0.2 * np.random.default_rng(2).standard_normal((2, TINY_SR))).astype(np.float32)
    assert np.array_equal(keras.models.load_model(path).predict(waves, verbose=0), model.predict(waves, verbose=0))


def test_import_freesound_tf_alone_loads_every_saved_model_and_keeps_the_plot_backend(
        tiny_runs, waveform_model, tmp_path) -> None:
    """A fresh notebook: `import freesound_tf`, then keras.models.load_model on fold checkpoints (compiled,
    with our losses and metrics) and a waveform-only model; training code never switches the backend."""
    # Both architectures, and a checkpoint with its optimizer state (last.keras).
    folds = [str(run / "fold0" / "best.keras") for run in tiny_runs] + [str(tiny_runs[1] / "fold0" / "last.keras")]
    code = (
        "import sys, matplotlib, numpy as np\n"
        "matplotlib.use('svg')\n"
        "import freesound_tf, keras\n"
        "for path in sys.argv[2:]:\n"
        "    keras.models.load_model(path)\n"
        "from freesound_tf.training.plots import plot_per_class\n"
        "import freesound_tf.training.member\n"
        "plot_per_class(['a', 'b'], np.array([0.2, 0.9]), sys.argv[1], 'classes')\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "plot.png"), *folds, str(waveform_model[1])],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_load_run_predict_matches_freesound_tf_predict(tiny_runs, tmp_path) -> None:
    """run.predict(waveforms, rate) scores arrays like `freesound-tf predict` scores the same audio files
    (decoded, resampled from 16 kHz, trimmed, cached as int16, TTA, fold mean)."""
    from freesound_tf.inference import predict_folder
    from tests.export.helpers import clips_with_silence, random_clips

    run = freesound_tf.load_run(tiny_runs[1])  # the member with global features and length
    assert run.class_names == list(run.classes.names)
    clips16k = [soxr.resample(c, TINY_SR, 16000).astype(np.float32) for c in random_clips((7000, 12000)) +
                clips_with_silence()[:1]]
    for k, clip in enumerate(clips16k):
        sf.write(tmp_path / f"clip{k}.wav", clip, 16000, subtype="FLOAT")
    _, fnames, expected, _ = predict_folder(tiny_runs[1], tmp_path, tmp_path / "work", workers=1, progress=False)
    assert fnames == [f"clip{k}.wav" for k in range(3)]
    got = run.predict(clips16k, sample_rate=16000)
    assert got.shape == (3, len(run.classes)) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-4)  # the cache stores int16 samples
    with pytest.raises(ValueError, match=r"waveforms\[1\]: contains NaN"):
        run.predict([clips16k[0], np.full(100, np.nan, np.float32)], 16000)


def test_recipe_reference_in_readme_is_current() -> None:
    from freesound_tf.recipe_reference import README_BEGIN, README_END, recipe_reference

    text = (REPO / "README.md").read_text()
    section = text[text.index(README_BEGIN) + len(README_BEGIN):text.index(README_END)]
    assert section.strip() == recipe_reference().strip(), (
        "README's recipe key reference is stale: run `python -m freesound_tf.recipe_reference README.md`")
