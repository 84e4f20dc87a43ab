"""Seed 004's schedule: per-epoch learning rate and mixup of every member's stages, the pretrain
checkpoint window and the fine-tune early stopping, against the seed's loops (tests/fidelity/seed004.py)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from freesound_tf.config import StageConfig, scale_epochs
from freesound_tf.training.callbacks import ClipValidation, StageSchedule, StageState
from tests.fidelity.seed004 import FINETUNE, MEMBERS, PRETRAIN, recipe, seed_epochs_run, seed_schedule


def _our_schedule(stage: StageConfig) -> list[tuple[float, float]]:
    """(rate, mixup probability) StageSchedule sets at the start of each epoch of ``stage``."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Nadam(stage.lr), loss="mse")
    mixup = []
    schedule = StageSchedule(stage, mixup.append)
    schedule.set_model(model)
    rates = []
    for epoch in range(stage.epochs):
        schedule.on_epoch_begin(epoch)
        rates.append(float(np.asarray(model.optimizer.learning_rate)))
    return list(zip(rates, mixup))


@pytest.mark.parametrize("member", MEMBERS)
def test_learning_rate_and_mixup_per_epoch_match_the_seed(member: str) -> None:
    train = recipe(member).train
    stages = [(train.finetune, FINETUNE)]
    if member == "max3exam":  # no pretraining of its own: it starts from v1mix's (test_seed004_init_from)
        assert train.pretrain.epochs == 0
    else:
        stages.append((train.pretrain, PRETRAIN))
    for stage, seed in stages:
        ours = _our_schedule(stage)
        expected = seed_schedule(seed["epochs"], seed["milestones"], seed["mixup_prob"])
        assert len(ours) == len(expected)
        for epoch, ((rate, mix), (seed_rate, seed_mix)) in enumerate(zip(ours, expected)):
            assert rate == pytest.approx(seed_rate, rel=1e-6), (member, epoch)
            assert mix == seed_mix, (member, epoch)
    # Spelled out: the rate halves at the start of 0-based epoch 14, mixup stops there.
    finetune = _our_schedule(train.finetune)
    assert finetune[13] == (pytest.approx(5e-4), 0.6) and finetune[14] == (pytest.approx(2.5e-4), 0.0)


class _FakeModel:
    """What ClipValidation touches on a model: the rate, saving (writes the epoch it was trained to), the stop flag."""

    def __init__(self) -> None:
        self.optimizer = SimpleNamespace(learning_rate=np.float32(1e-3))
        self.stop_training = False
        self.epoch = -1

    def save(self, path) -> None:
        Path(path).write_text(str(self.epoch))


def _scores_for(quality: list[int], clips: int = 40) -> tuple[np.ndarray, list[np.ndarray]]:
    """Validation labels and per-epoch predictions whose lwlrap rises with ``quality`` (0..clips):
    the first ``quality`` clips are ranked right, the others wrong."""
    labels = np.tile([1.0, 0.0], (clips, 1))
    return labels, [np.where(np.arange(clips)[:, None] < q, labels, 1.0 - labels) for q in quality]


def _run_validation(stage: StageConfig, quality: list[int], tmp_path: Path) -> tuple[int, StageState, _FakeModel]:
    """Feed ClipValidation one epoch per quality value until it stops; returns epochs run and its state."""
    labels, predictions = _scores_for(quality)
    stage_dir = tmp_path / "stage"
    stage_dir.mkdir(parents=True)
    state = StageState(stage_dir)
    epochs = iter(predictions)
    callback = ClipValidation(stage, stage_dir, state, lambda model: next(epochs), labels)
    model = _FakeModel()
    callback.set_model(model)
    run = 0
    while run < stage.epochs and not model.stop_training:
        model.epoch = run
        callback.on_epoch_end(run, {})
        run += 1
    return run, state, model


# Quality per epoch: rises to a peak at epoch `peak`, then stays below it (a plateau).
def _plateau(peak: int, epochs: int = 40, top: int = 30) -> list[int]:
    return [min(e, peak) * top // peak if e <= peak else top - 3 - e % 2 for e in range(epochs)]


@pytest.mark.parametrize("peak", [5, 20, 24, 25, 26, 29, 30, 38])
def test_finetune_early_stopping_fires_as_in_the_seed(peak: int, tmp_path: Path) -> None:
    stage = recipe("v1mix").train.finetune
    quality = _plateau(peak)
    run, state, _ = _run_validation(stage, quality, tmp_path)
    assert run == seed_epochs_run([float(q) for q in quality])
    assert state.best_epoch == peak and state.finished
    if peak <= 24:  # ten epochs without a gain by epoch 34: the stage ends before epoch 35
        assert run == 35


def test_early_stopping_on_random_score_sequences_matches_the_seed(tmp_path: Path) -> None:
    stage = recipe("se").train.finetune
    rng = np.random.default_rng(0)
    for trial in range(10):
        quality = list(np.minimum(rng.integers(0, 30, 40) + np.arange(40) // 4, 40))
        run, _, _ = _run_validation(stage, quality, tmp_path / str(trial))
        assert run == seed_epochs_run([float(q) for q in quality]), quality


def test_pretrain_keeps_the_best_of_epochs_28_to_34(tmp_path: Path) -> None:
    stage = recipe("msc_se_w1").train.pretrain
    quality = [e for e in range(28)] + [20, 22, 25, 24, 21, 23, 20]  # epoch 27 beats every later one
    _, state, model = _run_validation(stage, quality, tmp_path)
    assert state.best_epoch == 30  # the seed saves from 0-based epoch 28 on; 27 is not a candidate
    assert (tmp_path / "stage" / "best.keras").read_text() == "30"  # the checkpoint holds epoch 30's weights
    assert [row["epoch"] for row in state.history] == list(range(35))


def test_quick_runs_keep_valid_0_based_indices() -> None:
    quick = scale_epochs(recipe("v1mix"), 0.1).train
    assert quick.pretrain.epochs == 4 and quick.pretrain.lr_milestones == (1, 2)
    assert quick.pretrain.best_from_epoch == 3  # inside the 4 epochs
    assert quick.finetune.epochs == 4 and quick.finetune.lr_milestones == (1, 2, 3)
    assert quick.finetune.early_stop_from_epoch == 4
