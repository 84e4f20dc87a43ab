"""Seed 003 options on a tiny run: retraining on the validation fold changes test predictions only,
multi-length TTA trains a variable-length model, and temperature calibration writes test_calibrated.npy."""
import json

import keras
import numpy as np
import pytest

from freesound_tf.calibration import apply_temperature
from freesound_tf.config import (
    AudioConfig, FoldsConfig, FrontendConfig, ModelConfig, PipelineConfig, Recipe, StageConfig, TrainConfig,
)
from freesound_tf.data.demo import make_demo_dataset
from freesound_tf.data.prepare import prepare_data
from freesound_tf.inference import predict_clips
from freesound_tf.training.member import train_member
from freesound_tf.training.retrain import final_learning_rate
from freesound_tf.training.run_folder import load_run

SR = 8000
RECIPE = Recipe(
    name="tiny_resnext",
    audio=AudioConfig(sample_rate=SR),
    pipeline=PipelineConfig(crop_seconds=1.0, batch_size=4),
    folds=FoldsConfig(n_splits=2, seed=0),
    frontend=FrontendConfig(n_fft=256, hop_length=128, n_mels=32, deltas=True, time_masks=1, freq_masks=1),
    model=ModelConfig(name="resnext", use_global_features=False, use_length=False,
                      options={"depths": [1, 1], "cardinality": 2, "bottleneck_width": 2, "base_width": 4}),
    train=TrainConfig(loss="bce", finetune=StageConfig(epochs=1, lr=1e-3, lr_milestones=(1,), lr_factor=0.5),
                      tta="multi_length", tta_lengths=(0.75, 1.0), tta_random_crops=2, tta_combine="gmean",
                      retrain_on_val_epochs=2, calibration="temperature", folds_to_run=(0,)),
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrain")
    demo = make_demo_dataset(root / "demo", seed=5, sample_rate=SR, n_curated=16, n_noisy=1, n_test=6)
    data = prepare_data(demo, RECIPE.audio, root / "work", splits=["curated", "test"], workers=1, progress=False)
    train_member(RECIPE, data, root / "run", verbose=0)
    return root / "run", data


def test_retrained_model_scores_test_clips_and_oof_stays_with_the_best_model(run) -> None:
    run_dir, data = run
    folds = np.loadtxt(run_dir / "folds.csv", delimiter=",", skiprows=1, usecols=1, dtype=int)
    with data.splits["curated"].open() as curated, data.splits["test"].open() as test:
        for k in RECIPE.train.folds_to_run:
            fold = run_dir / f"fold{k}"
            best = keras.models.load_model(fold / "best.keras", compile=False)
            retrained = keras.models.load_model(fold / "retrained.keras", compile=False)
            assert best.input["waveform"].shape == (None, None)  # multi_length TTA: variable-length models
            assert any(not np.array_equal(a, b) for a, b in zip(best.get_weights(), retrained.get_weights()))
            val = np.flatnonzero(folds == k)
            oof = np.load(fold / "oof.npy")
            np.testing.assert_allclose(oof, predict_clips(best, curated, val, RECIPE), atol=1e-6)
            assert np.abs(oof - predict_clips(retrained, curated, val, RECIPE)).max() > 1e-4
            rows = np.arange(len(test))
            scores = np.load(fold / "test.npy")
            np.testing.assert_allclose(scores, predict_clips(retrained, test, rows, RECIPE), atol=1e-6)
            assert np.abs(scores - predict_clips(best, test, rows, RECIPE)).max() > 1e-4
    assert [p.name for p in load_run(run_dir).fold_models] == ["retrained.keras"]  # predict / export


def test_temperature_is_fit_on_oof_and_applied_to_test_scores(run) -> None:
    run_dir, _ = run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    temperature = metrics["calibration"]["temperature"]
    assert temperature > 0 and metrics["calibration"]["oof_loss_calibrated"] <= metrics["calibration"]["oof_loss_raw"]
    raw = np.load(run_dir / "test.npy")
    np.testing.assert_allclose(np.load(run_dir / "test_calibrated.npy"), apply_temperature(raw, temperature, True),
                               rtol=1e-6)


def test_final_learning_rate_follows_the_schedule() -> None:
    assert final_learning_rate(StageConfig(epochs=10, lr=1e-3, lr_milestones=(4, 8), lr_factor=0.1)) == \
        pytest.approx(1e-5)
    assert final_learning_rate(StageConfig(epochs=3, lr=1e-3, lr_milestones=(4,), lr_factor=0.1)) == pytest.approx(1e-3)
    assert final_learning_rate(StageConfig(epochs=5, lr=1e-2, lr_schedule="one_cycle", one_cycle_final_div=1e4)) == \
        pytest.approx(1e-6)
