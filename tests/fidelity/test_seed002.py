"""Seed 002 (FAT2018 8th place, sainathadapa/kaggle-freesound-audio-tagging) as its code trains:
MobileNetV2 from ImageNet weights (here from a local file), time shift / flip augmentation, no random
erasing (never reached its generator), batch 64, Beta(1) / Beta(0.5) mixup, 263-762-frame batches."""
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig, PipelineConfig, load_recipe
from freesound_tf.data.pipeline import TrainInput
from freesound_tf.layers.time_shift import RandomTimeShiftFlip
from freesound_tf.models.mobilenet_pca import build_mobilenet_pca
from tests.data.test_pipeline import MemoryCache

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = FrontendConfig(n_fft=256, hop_length=128, n_mels=32)


@pytest.mark.parametrize("name, alpha, weights", [("mobilenet_pca_mel", 1.0, "imagenet"), ("mobilenet_pca", 0.5, "")])
def test_recipes_follow_the_seed_code(name, alpha, weights):
    recipe = load_recipe(ROOT / "models" / f"{name}.toml")
    p, f = recipe.pipeline, recipe.frontend
    assert (p.batch_size, p.mixup_mode, p.mixup_alpha, recipe.train.finetune.mixup_prob) == (64, "beta", alpha, 1.0)
    assert (f.time_shift, f.time_flip, f.random_erasing) == (0.6, 0.5, 0.0)
    assert (recipe.audio.sample_rate, f.n_fft, f.hop_length, f.n_mels) == (22050, 1764, 220, 64)
    frames = [round(s * 22050 / 220, 6) for s in p.random_length_seconds]
    assert frames == [263, 762] and not p.random_length_percentiles  # np.random.randint(263, 763)
    assert [round(s * 22050 / 220) for s in recipe.train.tta_lengths] == [263, 363, 463, 563, 663, 763]
    assert (recipe.train.optimizer, recipe.model.options.get("weights", "")) == ("adam", weights)


def _save_legacy_h5(model: keras.Model, path: Path) -> None:
    """The format of Keras' downloadable ImageNet files (mobilenet_v2_..._no_top.h5)."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def _model(weights: str, alpha: float = 0.35) -> keras.Model:
    options = {"alpha": alpha, "dense_units": [16], "mel_only": True, "weights": weights}
    return build_mobilenet_pca(ModelConfig(name="mobilenet_pca", use_global_features=False, use_length=False,
                                           options=options), FRONTEND, 4, 8000, None, multilabel=False)


def test_mobilenet_starts_from_a_local_weights_file(tmp_path):
    source = keras.applications.MobileNetV2(input_shape=(None, 32, 3), alpha=0.35, include_top=False, weights=None)
    _save_legacy_h5(source, tmp_path / "mobilenet_v2_0.35_no_top.h5")
    body = _model(str(tmp_path / "mobilenet_v2_0.35_no_top.h5")).get_layer("mobilenetv2")
    for expected, loaded in zip(source.get_weights(), body.get_weights()):
        np.testing.assert_array_equal(loaded, expected)
    random_init = _model("").get_layer("mobilenetv2")
    assert not np.array_equal(random_init.get_weights()[0], source.get_weights()[0])
    keras.backend.clear_session()


@pytest.mark.parametrize("weights, alpha, why", [("missing.h5", 0.35, "no such file"), ("file", 0.5, "cannot start")])
def test_a_missing_or_mismatched_weights_file_is_one_line_naming_the_key(tmp_path, weights, alpha, why):
    if weights == "file":  # weights of a narrower network
        _save_legacy_h5(keras.applications.MobileNetV2(input_shape=(None, 32, 3), alpha=0.35, include_top=False,
                                                       weights=None), tmp_path / "other.h5")
        weights = str(tmp_path / "other.h5")
    else:
        weights = str(tmp_path / weights)
    with pytest.raises(ConfigError, match="model.options.weights") as error:
        _model(weights, alpha)
    assert why in str(error.value) and "\n" not in str(error.value)
    keras.backend.clear_session()


def test_time_shift_and_flip_like_the_image_generator():
    x = np.arange(2 * 10 * 3, dtype=np.float32).reshape(2, 10, 3, 1)
    np.testing.assert_array_equal(RandomTimeShiftFlip(0.6, 0.5)(x, training=False), x)  # inference: as is
    np.testing.assert_array_equal(RandomTimeShiftFlip(0.0, 1.0)(x, training=True), x[:, ::-1])
    layer = RandomTimeShiftFlip(0.6, 0.0, seed=0)
    shifts = []
    for _ in range(40):
        out = np.asarray(layer(x, training=True))
        for clip in range(2):
            # Output frame t is input frame t - s for one whole s, the edge frames repeated into the gap.
            matches = [s for s in range(-9, 10) if np.array_equal(out[clip], x[clip][np.clip(np.arange(10) - s, 0, 9)])]
            assert len(matches) == 1, out[clip, :, 0, 0]
            shifts.append(matches[0])
    assert min(shifts) >= -6 and max(shifts) <= 6 and len(set(shifts)) > 5  # up to 60 % of 10 frames either way


def test_random_batch_lengths_in_seconds():
    cache = MemoryCache([1000] * 8)
    source = TrainInput(cache, np.eye(8, dtype=np.float32), PipelineConfig(batch_size=2, random_length_seconds=(2.63, 7.6)),
                        100, inputs=("waveform",))
    lengths = {x["waveform"].shape[1] for _ in range(3) for x, _ in source.dataset()}
    assert min(lengths) >= 263 and max(lengths) <= 760 and len(lengths) > 3
