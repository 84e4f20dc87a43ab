"""Seed 003's retraining on the validation fold.

After fold k's best model has written its out-of-fold predictions, it trains a few more epochs on
fold k's own (validation) clips, at the rate and with the mixup / effects settings of the fine-tune
stage's last epoch. That model has seen every curated clip, so it scores only the test clips (and
``freesound-tf predict`` / export); the OOF predictions, and everything fit on them (stacking,
calibration), keep coming from the model that never saw its fold.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras

from freesound_tf.config import StageConfig
from freesound_tf.data.pipeline import TrainInput
from freesound_tf.training.callbacks import effects_active, learning_rate, mixup_prob_at
from freesound_tf.training.checkpoints import save_model_atomic
from freesound_tf.training.distribute import Distribution, make_distribution

RETRAINED = "retrained.keras"  # beside a fold's best.keras


def final_learning_rate(stage: StageConfig) -> float:
    """The rate the stage ends with: after all milestones (step) or the one-cycle floor."""
    if stage.lr_schedule == "one_cycle":
        return stage.lr / stage.one_cycle_final_div
    return learning_rate(stage, stage.epochs - 1)


def retrain_on_validation(best_path: Path, compile_model: Callable[[keras.Model, float], None],
                          val_input: TrainInput, stage: StageConfig, epochs: int, out_path: Path,
                          verbose: int = 1, distribution: Distribution | None = None) -> keras.Model:
    """Train the model at ``best_path`` ``epochs`` more epochs on ``val_input``; save it to ``out_path``."""
    distribution = distribution or make_distribution("default")
    with distribution.scope():
        model = keras.models.load_model(best_path, compile=False)
        compile_model(model, final_learning_rate(stage))
    distribution.adopt(model)
    last = stage.epochs - 1
    val_input.mixup_prob = mixup_prob_at(stage, last)
    val_input.set_effects(effects_active(stage, last))
    with distribution.scope():
        model.fit(distribution.dataset(val_input), epochs=epochs, verbose=verbose)
    save_model_atomic(model, out_path)
    return model
