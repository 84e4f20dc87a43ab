"""Fit one training stage, resuming from its last epoch checkpoint when interrupted."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from freesound_tf.config import StageConfig
from freesound_tf.data.pipeline import EpochPlan, TrainInput
from freesound_tf.locking import remove_stale_temps
from freesound_tf.training.callbacks import (
    ClipValidation, F2Curriculum, StageSchedule, StageState, mixup_schedule, settle_best,
)
from freesound_tf.training.checkpoints import checkpoint_problem, copy_atomic
from freesound_tf.training.distribute import Distribution, make_distribution

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
    predict_train: Callable[[keras.Model, np.ndarray], np.ndarray] | None = None,
    distribution: Distribution | None = None,
) -> Path:
    """Train ``stage.epochs`` epochs (or resume), return the path of the best checkpoint.

    A finished stage is not trained again; an unfinished one continues from ``last.keras``
    (weights and optimizer state) at the epoch after the last completed one. ``predict_train``
    (model, cache rows -> their scores) is needed when ``stage.f2_below > 0``. Under a
    ``distribution`` the models are built, loaded and fitted in its scope (``make_model`` need not).
    """
    distribution = distribution or make_distribution("default")
    stage_dir.mkdir(parents=True, exist_ok=True)
    state = _readable_state(stage_dir)
    best, last = stage_dir / "best.keras", stage_dir / "last.keras"
    if state.finished:
        log.info("%s: finished earlier (best val_lwlrap %.4f at epoch %s), reusing it",
                 stage_dir.name, state.best_score or float("nan"), state.best_epoch)
        return best
    if state.epochs_done:
        log.info("%s: resuming after epoch %d", stage_dir.name, state.epochs_done)
        with distribution.scope():
            model = keras.models.load_model(last)
    else:
        with distribution.scope():
            model = make_model()
            compile_model(model, stage.lr)
    distribution.adopt(model)
    steps_per_epoch = len(train_input) // distribution.replicas
    callbacks = [
        StageSchedule(stage, lambda prob: setattr(train_input, "mixup_prob", prob), train_input.set_effects,
                      steps_per_epoch=steps_per_epoch),
        ClipValidation(stage, stage_dir, state, predict_val, val_labels),
        keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir), write_graph=False),
    ]
    if stage.f2_below > 0:
        if predict_train is None:
            raise ValueError("fit_stage: stage f2_below > 0 needs predict_train (scores of the training clips)")
        callbacks.insert(1, F2Curriculum(stage.f2_below, train_input, predict_train))  # logs before ClipValidation
    # One iterator for the whole stage where the input can run continuously (a new one per epoch costs
    # tens of ms and refills shuffle buffers); F2's per-epoch clip selection needs an iterator per epoch.
    continuous = train_input.continuous and stage.f2_below <= 0
    epochs = EpochPlan(state.epochs_done, mixup_schedule(stage)) if continuous else None
    with distribution.scope():
        model.fit(distribution.dataset(train_input, epochs), epochs=stage.epochs, initial_epoch=state.epochs_done,
                  steps_per_epoch=steps_per_epoch if continuous else None, callbacks=callbacks, verbose=verbose)
    state.finished = True
    state.save()
    if not best.exists():
        # Early stopping fired before best_from_epoch: the last weights are all there is.
        log.warning("%s: no epoch reached best_from_epoch=%d, keeping the last one", stage_dir.name,
                    stage.best_from_epoch)
        copy_atomic(last, best)
    return best


def _readable_state(stage_dir: Path) -> StageState:
    """The stage's state, moved back to the last epoch whose checkpoint can be read.

    Checkpoints are written atomically, so this matters only for files damaged otherwise (a full
    disk, a copy cut short, an older version's checkpoints): an unreadable ``last.keras`` sends the
    stage back to its best epoch (``best.keras`` holds weights and optimizer state too) and the
    epochs after it are trained again; with no readable checkpoint the stage starts over.
    """
    for name in ("best.keras", "last.keras", "state.json", "history.csv"):
        remove_stale_temps(stage_dir / name)  # the run folder is locked: only killed writers left these
    state = StageState(stage_dir)
    best, last = stage_dir / "best.keras", stage_dir / "last.keras"
    if not state.epochs_done:
        return StageState(stage_dir, resume=False)
    last_problem = checkpoint_problem(last)
    if last_problem is None:
        settle_best(stage_dir, state)  # finish a best.keras copy that a kill interrupted
        if state.finished and state.best_epoch is None:
            copy_atomic(last, best)  # no epoch reached best_from_epoch: the last one is kept (see fit_stage)
    if state.finished:
        best_problem = checkpoint_problem(best)
        if best_problem is None:
            return state
        log.warning("%s: %s is unreadable (%s); training the stage again", stage_dir, best, best_problem)
        return _start_over(stage_dir)
    if last_problem is None:
        return state
    best_problem = checkpoint_problem(best)
    kept = [k for k, row in enumerate(state.history) if row["epoch"] == state.best_epoch]
    if best_problem is None and kept:
        log.warning("%s: %s is unreadable (%s); going back to the best epoch %s and training on from there",
                    stage_dir, last, last_problem, state.best_epoch)
        copy_atomic(best, last)
        state.history = state.history[:kept[0] + 1]
        state.epochs_done, state.wait, state.finished = len(state.history), 0, False
        state.save()
        return state
    log.warning("%s: %s is unreadable (%s) and no readable best.keras to go back to; starting the stage over",
                stage_dir, last, last_problem)
    return _start_over(stage_dir)


def _start_over(stage_dir: Path) -> StageState:
    """A fresh state; checkpoints of the abandoned attempt are removed so none of them is taken for a new one."""
    for name in ("best.keras", "last.keras"):
        (stage_dir / name).unlink(missing_ok=True)
    return StageState(stage_dir, resume=False)
