"""Seed 003 (FAT2018 ResNeXt / ResNet-50): the resnet50 member's masked-and-concatenated short inputs, and
test predictions from the mix of each fold's original and validation-retrained model."""
from pathlib import Path

import keras
import numpy as np
import pytest

from freesound_tf.augmentation.clip_ops import masked_copy
from freesound_tf.config import (
    AudioConfig, AugmentConfig, FoldsConfig, ModelConfig, PipelineConfig, Recipe, StageConfig, TrainConfig,
    load_recipe,
)
from freesound_tf.data.pipeline import TrainInput
from tests.data.test_pipeline import MemoryCache
from tests.fidelity.test_seed000 import build_level_model  # noqa: F401  (registers test_fidelity_level)

ROOT = Path(__file__).resolve().parents[2]
SR = 8000


@pytest.mark.parametrize("name, trick", [("resnext50", False), ("resnet50", True)])
def test_recipes(name, trick):
    recipe = load_recipe(ROOT / "models" / f"{name}.toml")
    assert recipe.augment.short_clip_masked_copy == trick
    assert (recipe.train.retrain_test, recipe.train.retrain_on_val_epochs) == ("mix", 5)
    f = recipe.frontend
    assert (recipe.audio.sample_rate, f.n_fft, f.hop_length, f.n_mels, f.deltas) == (22050, 1764, 220, 64, True)
    assert -(-round(recipe.pipeline.crop_seconds * 22050) // 220) == 150 and f.time_masks == f.freq_masks == 0


def test_masked_copy_follows_the_clip_with_a_time_and_a_frequency_mask():
    clip = np.random.default_rng(0).normal(size=4000).astype(np.float32)
    out = masked_copy(clip, SR, np.random.default_rng(3), time_fraction=0.25, freq_fraction=0.3)
    assert out.shape == (8000,)
    np.testing.assert_array_equal(out[:4000], clip)
    zeros = np.flatnonzero(out[4000:] == 0)
    assert 0 < len(zeros) <= 1000 and zeros.max() - zeros.min() + 1 == len(zeros)  # one silent span, <= 25 %
    band_only = masked_copy(clip, SR, np.random.default_rng(3), time_fraction=0.0, freq_fraction=0.3)[4000:]
    removed = np.flatnonzero(np.abs(np.fft.rfft(band_only)) < 1e-3 * np.abs(np.fft.rfft(clip)).mean())
    assert len(removed) > 10 and removed.max() - removed.min() + 1 == len(removed)  # one band of bins, now empty
    kept = np.setdiff1d(np.arange(2001), removed)
    np.testing.assert_allclose(np.fft.rfft(band_only)[kept], np.fft.rfft(clip)[kept], rtol=1e-3, atol=1e-2)


def test_only_short_training_clips_get_the_masked_copy():
    cache = MemoryCache([50, 400])
    config = PipelineConfig(crop_seconds=2.0, batch_size=2)
    source = TrainInput(cache, np.eye(2, dtype=np.float32), config, 100, inputs=("waveform",),
                        augment=AugmentConfig(short_clip_masked_copy=True, masked_copy_time_fraction=0.0,
                                              masked_copy_freq_fraction=0.0))
    waves = source._waveforms(np.array([0, 1]), np.random.default_rng(0))
    short = waves[0][waves[0] != 0]
    np.testing.assert_allclose(short, np.concatenate([np.arange(1, 50)] * 2), atol=1e-3)  # the clip twice (0 dropped)
    long = waves[1]
    np.testing.assert_array_equal(long, long[0] + np.arange(200))  # a plain window of the long clip
    with pytest.raises(ValueError, match="short_clip_masked_copy"):
        TrainInput(cache, np.eye(2, dtype=np.float32), PipelineConfig(crop_seconds=2.0, crop_mode="whole"), 100,
                   augment=AugmentConfig(short_clip_masked_copy=True))


def test_test_clips_are_scored_by_the_original_and_the_retrained_model(tmp_path):
    from freesound_tf.data.demo import make_demo_dataset
    from freesound_tf.data.prepare import prepare_data
    from freesound_tf.inference import predict_clips, predict_folder
    from freesound_tf.training.member import train_member
    from freesound_tf.training.run_folder import load_run

    demo = make_demo_dataset(tmp_path / "demo", seed=2, sample_rate=SR, n_curated=16, n_noisy=2, n_test=5)
    recipe = Recipe(name="mix", audio=AudioConfig(sample_rate=SR),
                    pipeline=PipelineConfig(crop_seconds=1.0, batch_size=4, eval_crops=1),
                    folds=FoldsConfig(n_splits=2, seed=0),
                    model=ModelConfig(name="test_fidelity_level", use_global_features=False, use_length=False),
                    train=TrainConfig(finetune=StageConfig(epochs=1, lr=0.05), retrain_on_val_epochs=2,
                                      retrain_test="mix"))
    data = prepare_data(demo, recipe.audio, tmp_path / "work", splits=["curated", "test"], workers=1, progress=False)
    run = tmp_path / "run"
    result = train_member(recipe, data, run, verbose=0)
    paths = load_run(run).fold_models
    assert [p.relative_to(run).as_posix() for p in paths] == [
        "fold0/best.keras", "fold0/retrained.keras", "fold1/best.keras", "fold1/retrained.keras"]
    split = data.splits["test"]
    with split.open() as cache:
        every = np.arange(len(cache))
        per_model = [predict_clips(keras.models.load_model(p, compile=False), cache, every, recipe) for p in paths]
    assert not np.allclose(per_model[0], per_model[1])  # retraining changed the model
    np.testing.assert_allclose(np.load(run / "fold0" / "test.npy"), (per_model[0] + per_model[1]) / 2, rtol=1e-5)
    np.testing.assert_allclose(result.test, np.mean(per_model, axis=0), rtol=1e-5)
    _, fnames, scores, _ = predict_folder(run, demo / "test", tmp_path / "work", workers=1, progress=False)
    order = [list(split.table.fnames).index(f) for f in fnames]
    np.testing.assert_allclose(scores, result.test[order], rtol=1e-5)  # predict / export mix the same way
