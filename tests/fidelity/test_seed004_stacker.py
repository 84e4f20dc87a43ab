"""Seed 004's stacker stopping: validation LRAP scored before the first epoch and after each one,
patience 15, at most 1000 epochs, best weights restored."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from freesound_tf.config import FoldsConfig, StackerConfig, load_stacker_recipe
from freesound_tf.data.folds import make_folds
from freesound_tf.stacking.train import BestScoreStopping, fit_stacker
from tests.fidelity.seed004 import ROOT, seed_stacker_stop


def test_the_seed_recipe_and_the_default_stop_as_the_seed() -> None:
    for config in (load_stacker_recipe(ROOT / "stacking" / "lc1d.toml"), StackerConfig()):
        assert (config.stop_on, config.patience, config.max_epochs) == ("lrap", 15, 1000)
        assert (config.lr, config.batch_size, config.shift) == (1e-4, 40, 1.6)


class _FakeModel:
    """The weights of a model as one number: the count of epochs it was trained."""

    def __init__(self) -> None:
        self.trained, self.stop_training = 0, False

    def get_weights(self) -> list[int]:
        return [self.trained]

    def set_weights(self, weights: list[int]) -> None:
        self.trained = weights[0]


def _drive(scores: list[float], max_epochs: int) -> tuple[BestScoreStopping, int, int]:
    """Run BestScoreStopping through a training loop whose k-th score is ``scores[k]``; returns the
    callback, the epochs trained and the epoch count the final weights come from."""
    calls = iter(scores)
    stop, model = BestScoreStopping(lambda m: next(calls), patience=15), _FakeModel()
    stop.set_model(model)
    stop.on_train_begin()
    epochs = 0
    while epochs < max_epochs and not model.stop_training:
        model.trained = epochs = epochs + 1
        stop.on_epoch_end(epochs - 1, {})
    stop.on_train_end()
    return stop, epochs, model.trained


def test_stopping_matches_the_seed_loop_on_score_sequences() -> None:
    rng = np.random.default_rng(0)
    for trial in range(60):
        scores = list(np.round(rng.random(90) * 0.2 + np.minimum(np.arange(90), rng.integers(0, 60)) / 100, 2))
        stop, trained, restored = _drive(scores, max_epochs=70)
        best, taken = seed_stacker_stop(scores, max_epochs=70)
        assert stop.best_epoch == best == restored, scores
        assert len(stop.scores) == min(taken + (taken == 70), 71)  # ours also scores after the 70th epoch
        assert trained == min(best + 15, 70)


def test_keras_fit_stops_and_restores_the_best_weights() -> None:
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    scores = iter([0.1, 0.3, 0.2, 0.5] + [0.4] * 40)  # best after 3 epochs
    stop = BestScoreStopping(lambda m: next(scores), patience=15)
    weights = [model.get_weights()[0].item()]
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: weights.append(model.get_weights()[0].item()))
    history = model.fit(np.ones((4, 1)), np.full((4, 1), 3.0), batch_size=4, epochs=40, callbacks=[record, stop],
                        verbose=0)
    assert len(history.history["loss"]) == 18 and stop.best_epoch == 3
    assert model.get_weights()[0].item() == weights[3] != weights[18]


def test_the_untrained_stacker_wins_when_no_epoch_beats_it(tmp_path) -> None:
    """Fold 0's validation rows have members that already rank every label right: LRAP 1 before any
    training, which no epoch can beat (strictly). That fold stops after 15 epochs with its initial
    weights, although training on fold 1's noise moves them."""
    rng = np.random.default_rng(0)
    labels = (rng.random((120, 6)) < 0.3).astype(np.float32)
    labels[np.arange(120), rng.integers(0, 6, 120)] = 1
    config = StackerConfig(lr=3e-2, batch_size=40, max_epochs=20, folds=FoldsConfig(n_splits=2, seed=0))
    perfect = np.repeat((0.2 + 0.6 * labels)[:, :, None], 2, axis=2)
    noise = rng.random((120, 6, 2)).astype(np.float32)
    fold0 = make_folds(labels, 2, 0, multilabel=True) == 0  # the folds fit_stacker makes
    member_oof = np.where(fold0[:, None, None], perfect, noise)
    fit = fit_stacker(member_oof, labels, member_oof[:3], [1.0, 1.0], config, tmp_path)
    assert (fit.summaries[0]["best_epoch"], fit.summaries[0]["epochs"]) == (0, 15)
    init = np.tile([0.0, 0.0, 1.0], (6, 1))
    kernels = [np.asarray(keras.models.load_model(p, compile=False).get_layer("per_class_blend").kernel)[:, :, 0]
               for p in fit.model_paths]
    np.testing.assert_allclose(kernels[0], init, atol=1e-7)
    assert np.abs(kernels[1] - init).max() > 1e-3  # training does move them (fold 1 kept a trained model)


def test_bce_stopping_remains_available(tmp_path) -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random((60, 4)) < 0.4).astype(np.float32)
    oof = rng.random((60, 4, 2)).astype(np.float32)
    config = StackerConfig(lr=3e-2, max_epochs=6, patience=2, stop_on="bce", folds=FoldsConfig(n_splits=2, seed=0))
    fit = fit_stacker(oof, labels, oof[:2], [1.0, 1.0], config, tmp_path)
    assert all(1 <= s["best_epoch"] <= s["epochs"] <= 6 for s in fit.summaries)
