"""Per-epoch validation on whole clips, best/last checkpoints and resumable stage state."""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from freesound_tf.config import StageConfig
from freesound_tf.locking import atomic_path, write_text_atomic
from freesound_tf.metrics import f2_per_clip, lwlrap
from freesound_tf.training.checkpoints import copy_atomic, save_model_atomic


class StageState:
    """What a stage must remember across an interruption, stored as JSON beside its checkpoints."""

    def __init__(self, stage_dir: Path, resume: bool = True) -> None:
        self.path = stage_dir / "state.json"
        data = json.loads(self.path.read_text()) if resume and self.path.exists() else {}
        self.epochs_done: int = data.get("epochs_done", 0)
        self.best_score: float | None = data.get("best_score")
        self.best_epoch: int | None = data.get("best_epoch")
        self.wait: int = data.get("wait", 0)
        self.finished: bool = data.get("finished", False)
        self.history: list[dict] = data.get("history", [])

    def save(self) -> None:
        write_text_atomic(self.path, json.dumps({  # atomic: a kill never leaves half a state file
            "epochs_done": self.epochs_done, "best_score": self.best_score, "best_epoch": self.best_epoch,
            "wait": self.wait, "finished": self.finished, "history": self.history,
        }, indent=1))


def learning_rate(stage: StageConfig, epoch: int) -> float:
    """Rate of 0-based ``epoch``: ``lr`` times ``lr_factor`` per milestone already reached."""
    return stage.lr * stage.lr_factor ** sum(epoch >= m for m in stage.lr_milestones)


def one_cycle_rate(stage: StageConfig, step: int, total_steps: int) -> float:
    """One-cycle rate at batch ``step`` (0-based; ``total_steps`` is the end of the stage).

    Warm-up from ``lr / one_cycle_div`` to ``lr`` over the first ``one_cycle_pct_start`` of the steps,
    then annealing from ``lr`` to ``lr / one_cycle_final_div`` at the end; both halves cosine (fastai,
    seed 001) or linear (seed 000) after ``one_cycle_anneal``.
    """
    if not 0 <= step <= total_steps or total_steps < 1:
        raise ValueError(f"one_cycle_rate: step {step} outside [0, total_steps={total_steps}]")
    warm = stage.one_cycle_pct_start * total_steps
    if step < warm:
        start, end, fraction = stage.lr / stage.one_cycle_div, stage.lr, step / warm
    else:
        start, end, fraction = stage.lr, stage.lr / stage.one_cycle_final_div, (step - warm) / (total_steps - warm)
    if stage.one_cycle_anneal == "linear":
        return start + (end - start) * fraction
    return end + (start - end) * (1.0 + math.cos(math.pi * fraction)) / 2.0


def mixup_active(stage: StageConfig, epoch: int) -> bool:
    """Whether 0-based ``epoch`` mixes: not before the first milestone (when the stage says so) and
    not once the effects are off (``mixup_off_with_effects``)."""
    if stage.mixup_prob <= 0:
        return False
    if stage.mixup_off_with_effects and not effects_active(stage, epoch):
        return False
    first = stage.lr_milestones[0] if stage.lr_milestones else None
    return not (stage.mixup_until_first_milestone and first is not None and epoch >= first)


def mixup_schedule(stage: StageConfig) -> tuple[float, ...]:
    """The stage's mixup probability in each of its epochs (at least one)."""
    return tuple(mixup_prob_at(stage, epoch) for epoch in range(max(1, stage.epochs)))


def mixup_prob_at(stage: StageConfig, epoch: int) -> float:
    """The stage's mixup probability in 0-based ``epoch``."""
    return stage.mixup_prob if mixup_active(stage, epoch) else 0.0


def effects_active(stage: StageConfig, epoch: int) -> bool:
    """Seed 000's audio effects run in the epochs before ``effects_until_epoch`` (0: in every epoch)."""
    return stage.effects_until_epoch == 0 or epoch < stage.effects_until_epoch


def stop_early(stage: StageConfig, epoch: int, wait: int) -> bool:
    """Whether the stage ends after 0-based ``epoch``, ``wait`` epochs after its best one (all epochs so
    far when none is best yet): the next epoch is at least ``early_stop_from_epoch`` and the last
    ``early_stop_patience`` epochs brought no gain. Seed 004's fine-tuning skips every epoch e >= 35
    with e - best_epoch > 10: from 35, patience 10."""
    return stage.early_stop_patience > 0 and epoch + 1 >= stage.early_stop_from_epoch and \
        wait >= stage.early_stop_patience


class StageSchedule(keras.callbacks.Callback):
    """Sets the learning rate and switches mixup and the audio effects on/off at the start of every epoch.

    One-cycle (``lr_schedule``) sets the rate per batch and needs ``steps_per_epoch``; steps count
    from the stage's start, so a stage resumed at epoch e continues the cycle where it stopped.
    """

    def __init__(self, stage: StageConfig, set_mixup: Callable[[float], None],
                 set_effects: Callable[[bool], None] | None = None, steps_per_epoch: int | None = None) -> None:
        super().__init__()
        if stage.lr_schedule == "one_cycle" and not steps_per_epoch:
            raise ValueError("StageSchedule: lr_schedule 'one_cycle' needs steps_per_epoch >= 1")
        self.stage = stage
        self.set_mixup = set_mixup
        self.set_effects = set_effects
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch
        if self.stage.lr_schedule == "step":
            self.model.optimizer.learning_rate.assign(learning_rate(self.stage, epoch))
        self.set_mixup(mixup_prob_at(self.stage, epoch))
        if self.set_effects is not None:
            self.set_effects(effects_active(self.stage, epoch))

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.stage.lr_schedule == "one_cycle":
            step = self.epoch * self.steps_per_epoch + batch
            total = self.stage.epochs * self.steps_per_epoch
            self.model.optimizer.learning_rate.assign(one_cycle_rate(self.stage, min(step, total), total))


class F2Curriculum(keras.callbacks.Callback):
    """Seed 001's "f2cl": before each epoch, score the stage's training clips with the current model
    and train the epoch only on clips whose F2 at threshold 0.2 is below ``f2_below``.

    ``predict_train(model, rows)`` returns the scores of cache rows ``rows`` in order (the recipe's
    TTA). When no clip is below the bar the epoch trains on all clips: a Keras epoch cannot be
    empty, and that is the same as f2cl off for one epoch. The clips trained on are counted in ``f2_clips``.
    """

    def __init__(self, f2_below: float, train_input,
                 predict_train: Callable[[keras.Model, np.ndarray], np.ndarray]) -> None:
        super().__init__()
        self.f2_below = f2_below
        self.train_input = train_input
        self.predict_train = predict_train
        self.selected = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        indices = self.train_input.indices
        f2 = f2_per_clip(self.train_input.labels[indices], self.predict_train(self.model, indices))
        hard = f2 < self.f2_below
        self.train_input.set_active(indices[hard] if hard.any() else None)
        self.selected = len(self.train_input.active)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["f2_clips"] = self.selected


class ClipValidation(keras.callbacks.Callback):
    """Scores the validation clips after each epoch (exact lwlrap of crop-averaged predictions).

    Keeps ``best.keras`` (best ``val_lwlrap`` from ``best_from_epoch`` on), ``last.keras`` with the
    optimizer state for resuming, ``history.csv`` and ``state.json`` (epochs 0-based, as in the
    recipe); stops early on patience (see :func:`stop_early`). Each epoch commits in this order, every
    file written atomically: ``last.keras``, ``state.json``, then (a new best) ``best.keras`` as a copy
    of ``last.keras``. state.json so never names an epoch whose checkpoint is not on disk, and
    :func:`settle_best` finishes a best copy a kill interrupted. Place it before Keras' TensorBoard
    callback so the validation scores it adds get logged.
    """

    def __init__(self, stage: StageConfig, stage_dir: Path, state: StageState,
                 predict_val: Callable[[keras.Model], np.ndarray], val_labels: np.ndarray) -> None:
        super().__init__()
        self.stage, self.dir, self.state = stage, stage_dir, state
        self.predict_val = predict_val
        self.val_labels = val_labels

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        scores = self.predict_val(self.model)
        logs["val_lwlrap"] = lwlrap(self.val_labels, scores)
        clipped = np.clip(scores, 1e-7, 1 - 1e-7)
        logs["val_bce"] = float(-np.mean(self.val_labels * np.log(clipped)
                                         + (1 - self.val_labels) * np.log(1 - clipped)))
        logs["lr"] = float(np.asarray(self.model.optimizer.learning_rate))
        state = self.state
        if epoch >= self.stage.best_from_epoch and (state.best_score is None or logs["val_lwlrap"] > state.best_score):
            state.best_score, state.best_epoch, state.wait = logs["val_lwlrap"], epoch, 0
        else:
            state.wait += 1
        state.history.append({"epoch": epoch, **{k: float(v) for k, v in logs.items()}})
        state.epochs_done = epoch + 1
        stop = stop_early(self.stage, epoch, state.wait)
        if stop:
            self.model.stop_training = True
        state.finished = stop or state.epochs_done >= self.stage.epochs
        save_model_atomic(self.model, self.dir / "last.keras")
        self._write_history()
        state.save()  # after last.keras: a kill in between redoes this epoch, never skips it
        settle_best(self.dir, state)

    def _write_history(self) -> None:
        rows = self.state.history
        keys = list(dict.fromkeys(k for row in rows for k in row))
        with atomic_path(self.dir / "history.csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)


def settle_best(stage_dir: Path, state: StageState) -> None:
    """If the last committed epoch is the best one, make ``best.keras`` a copy of ``last.keras`` (idempotent)."""
    if state.history and state.best_epoch is not None and state.history[-1]["epoch"] == state.best_epoch:
        copy_atomic(stage_dir / "last.keras", stage_dir / "best.keras")
