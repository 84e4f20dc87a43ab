"""Fit one training stage, resuming from its last epoch checkpoint when interrupted."""
from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from freesound_tf.config import StageConfig
from freesound_tf.data.pipeline import TrainInput
from freesound_tf.training.callbacks import ClipValidation, StageSchedule, StageState

log = logging.getLogger(__name__)


def fit_stage(
    make_model: Callable[[], keras.Model],
    compile_model: Callable[[keras.Model, float], None],
    stage: StageConfig,
    stage_dir: Path,
    train_input: TrainInput,
    predict_val: Callable[[keras.Model], np.ndarray],
    val_labels: np.ndarray,
    tensorboard_dir: Path,
    verbose: int = 1,
) -> Path:
    """Train ``stage.epochs`` epochs (or resume), return the path of the best checkpoint.

    A finished stage is not trained again; an unfinished one continues from ``last.keras``
    (weights and optimizer state) at the epoch after the last completed one.
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    state = StageState(stage_dir)
    best = stage_dir / "best.keras"
    if state.finished:
        log.info("%s: finished earlier (best val_lwlrap %.4f at epoch %s), reusing it",
                 stage_dir.name, state.best_score or float("nan"), state.best_epoch)
        return best
    last = stage_dir / "last.keras"
    if state.epochs_done and last.exists():
        log.info("%s: resuming after epoch %d", stage_dir.name, state.epochs_done)
        model = keras.models.load_model(last)
    else:
        state = StageState(stage_dir, resume=False)
        model = make_model()
        compile_model(model, stage.lr)
    callbacks = [
        StageSchedule(stage, lambda prob: setattr(train_input, "mixup_prob", prob)),
        ClipValidation(stage, stage_dir, state, predict_val, val_labels),
        keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir), write_graph=False),
    ]
    model.fit(train_input.dataset(), epochs=stage.epochs, initial_epoch=state.epochs_done,
              callbacks=callbacks, verbose=verbose)
    state.finished = True
    state.save()
    if not best.exists():
        # Early stopping fired before best_from_epoch: the last weights are all there is.
        log.warning("%s: no epoch reached best_from_epoch=%d, keeping the last one", stage_dir.name,
                    stage.best_from_epoch)
        shutil.copy(last, best)
    return best
