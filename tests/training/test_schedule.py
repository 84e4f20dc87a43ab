"""One-cycle learning rate and seed 001's f2cl (training only on clips the model still gets wrong)."""
from __future__ import annotations

import math

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import fbeta_score

from freesound_tf.config import PipelineConfig, StageConfig
from freesound_tf.data.pipeline import TrainInput
from freesound_tf.metrics import f2_per_clip
from freesound_tf.training.callbacks import StageSchedule, one_cycle_rate
from freesound_tf.training.stage import fit_stage

CYCLE = StageConfig(epochs=4, lr=0.01, lr_schedule="one_cycle", one_cycle_pct_start=0.3, one_cycle_div=25.0,
                    one_cycle_final_div=1e4)


def _reference_rate(step: float, total: int, lr=0.01, pct=0.3, div=25.0, final_div=1e4) -> float:
    """Written differently on purpose: sin^2 warm-up, cos^2 annealing."""
    warm = pct * total
    if step <= warm:
        return lr / div + (lr - lr / div) * math.sin(math.pi * step / warm / 2) ** 2
    return lr / final_div + (lr - lr / final_div) * math.cos(math.pi * (step - warm) / (total - warm) / 2) ** 2


@pytest.mark.parametrize("total", [100, 7])
def test_one_cycle_matches_an_independent_formula(total: int) -> None:
    for step in sorted({0, 1, total // 4, int(0.3 * total), int(0.3 * total) + 1, total // 2, total - 1, total}):
        assert one_cycle_rate(CYCLE, step, total) == pytest.approx(_reference_rate(step, total), rel=1e-9), step
    assert one_cycle_rate(CYCLE, 0, 100) == pytest.approx(0.01 / 25)
    assert one_cycle_rate(CYCLE, 30, 100) == pytest.approx(0.01)
    assert one_cycle_rate(CYCLE, 100, 100) == pytest.approx(0.01 / 1e4)


def test_one_cycle_rises_then_falls() -> None:
    rates = np.array([one_cycle_rate(CYCLE, s, 200) for s in range(201)])
    peak = int(rates.argmax())
    assert peak == 60
    assert np.all(np.diff(rates[:peak + 1]) > 0) and np.all(np.diff(rates[peak:]) < 0)
    with pytest.raises(ValueError, match="step 201"):
        one_cycle_rate(CYCLE, 201, 200)


class _RecordRate(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def on_train_batch_begin(self, batch, logs=None) -> None:
        self.rates.append(float(np.asarray(self.model.optimizer.learning_rate)))


def _fit_rates(initial_epoch: int) -> list[float]:
    """Rates of every batch of a 4-epoch, 5-steps-per-epoch fit started at ``initial_epoch``."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.123), loss="mse")
    x, y = np.ones((40, 3), np.float32), np.zeros((40, 1), np.float32)
    record = _RecordRate()
    model.fit(x, y, batch_size=8, epochs=4, initial_epoch=initial_epoch, shuffle=False, verbose=0,
              callbacks=[StageSchedule(CYCLE, lambda prob: None, steps_per_epoch=5), record])
    return record.rates


def test_one_cycle_is_set_per_batch_and_a_resumed_stage_continues_it() -> None:
    full = _fit_rates(0)
    assert full == pytest.approx([one_cycle_rate(CYCLE, s, 20) for s in range(20)], rel=1e-6)
    assert _fit_rates(2) == pytest.approx(full[10:], rel=1e-6)  # resumed after epoch 2: steps 10..19
    with pytest.raises(ValueError, match="steps_per_epoch"):
        StageSchedule(CYCLE, lambda prob: None)


def test_f2_per_clip_matches_sklearn_per_row() -> None:
    rng = np.random.default_rng(0)
    y_true = (rng.random((40, 6)) < 0.3).astype(np.float32)
    y_true[:3] = 0  # clips without labels: 1 when nothing is predicted either (zero_division=1)
    y_score = rng.random((40, 6)) ** 2
    y_score[0] = 0.1
    for threshold in (0.2, 0.5):
        expected = [fbeta_score(t, s > threshold, beta=2, zero_division=1.0) for t, s in zip(y_true, y_score)]
        np.testing.assert_allclose(f2_per_clip(y_true, y_score, threshold), expected, rtol=1e-12)


class _RecordingCache:
    """20 clips of 100 samples; remembers which rows the pipeline read."""

    def __init__(self, n: int = 20) -> None:
        self.lengths = np.full(n, 100)
        self.length_feature = np.ones(n, np.float32)
        self.steps = 4
        self.reads: list[int] = []

    def read(self, i, start=0, stop=None):
        self.reads.append(int(i))
        return np.full((stop or 100) - start, 0.01 * i, np.float32)

    def read_global_features(self, indices):
        return np.zeros((len(indices), self.steps, 12), np.float32)


def _labels(n: int = 20) -> np.ndarray:
    return np.eye(3, dtype=np.float32)[np.arange(n) % 3]


def _epoch_rows(cache: _RecordingCache, dataset) -> tuple[set[int], int]:
    cache.reads.clear()
    batches = sum(1 for _ in dataset)
    return set(cache.reads), batches


def test_train_input_active_rows_change_between_epochs_of_one_dataset() -> None:
    cache, train = _RecordingCache(), np.arange(2, 18)
    data = TrainInput(cache, _labels(), PipelineConfig(crop_seconds=0.5, batch_size=4), 100, train,
                      inputs=("waveform",))
    dataset = data.dataset()
    assert _epoch_rows(cache, dataset) == (set(train), 4)
    data.set_active(np.array([3, 9, 10]))
    assert _epoch_rows(cache, dataset) == ({3, 9, 10}, 4)  # same epoch length, drawn from the 3 clips
    data.set_active(None)
    assert _epoch_rows(cache, dataset) == (set(train), 4)
    with pytest.raises(ValueError, match="subset of indices"):
        data.set_active(np.array([0, 3]))


def test_f2cl_trains_each_epoch_only_on_the_clips_below_the_bar(tmp_path) -> None:
    """A scripted 'predict' makes clips 2-5 wrong before epoch 1, 6-11 before epoch 2 and none
    before epoch 3; the cache shows which clips each epoch read."""
    cache, labels, train = _RecordingCache(), _labels(), np.arange(2, 18)
    hard_sets = [set(range(2, 6)), set(range(6, 12)), set()]
    stage = StageConfig(epochs=3, lr=0.01, lr_schedule="one_cycle", f2_below=1.0)
    data = TrainInput(cache, labels, PipelineConfig(crop_seconds=0.5, batch_size=8), 100, train, inputs=("waveform",))
    asked, read_per_epoch = [], []

    def predict_train(model, rows):
        asked.append(list(rows))
        hard = np.isin(rows, list(hard_sets[len(asked) - 1]))
        return np.where(hard[:, None], 1.0 - labels[rows], labels[rows])  # hard clips: F2 = 0, others 1

    def predict_val(model):
        read_per_epoch.append(set(cache.reads))
        cache.reads.clear()
        return np.random.default_rng(len(read_per_epoch)).random((4, 3))

    def make_model():
        wave = keras.Input((50,), name="waveform")
        return keras.Model({"waveform": wave}, keras.layers.Dense(3, activation="sigmoid", name="scores")(wave))

    def compile_model(model, lr):
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")

    fit_stage(make_model, compile_model, stage, tmp_path / "stage", data, predict_val, labels[[0, 1, 18, 19]],
              tmp_path / "tb", verbose=0, predict_train=predict_train)
    assert all(rows == list(train) for rows in asked) and len(asked) == 3
    assert read_per_epoch == [hard_sets[0], hard_sets[1], set(train)]  # nothing below the bar: every clip
    history = pd.read_csv(tmp_path / "stage" / "history.csv")
    assert list(history["f2_clips"]) == [4, 6, 16]
    # fit_stage handed the one-cycle schedule the epoch length: the rate after each epoch is its last step's.
    expected = [one_cycle_rate(stage, 2 * e + 1, 6) for e in range(3)]
    np.testing.assert_allclose(history["lr"], expected, rtol=1e-5)
