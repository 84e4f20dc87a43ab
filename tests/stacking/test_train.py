"""K-fold stacker training on a synthetic OOF set whose members have known per-class strengths."""
from pathlib import Path

import keras
import numpy as np
import pytest

from freesound_tf.config import FoldsConfig, StackerConfig
from freesound_tf.metrics import lwlrap
from freesound_tf.stacking.blends import blends
from freesound_tf.stacking import train as train_module
from freesound_tf.stacking.train import fit_stacker

N_CLIPS, N_CLASSES, N_FOLDS = 300, 10, 3
# Faster than the seed-004 recipe (lr 1e-4, up to 1000 epochs) so the test takes seconds.
CONFIG = StackerConfig(lr=3e-2, batch_size=50, max_epochs=25, patience=5, folds=FoldsConfig(n_splits=N_FOLDS, seed=0))


def synthetic_members(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Member A ranks classes 0-4 well and scores 5-9 with uniform noise; member B the reverse."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((N_CLIPS, N_CLASSES)) < 0.15).astype(np.float32)
    labels[np.arange(N_CLIPS), rng.integers(0, N_CLASSES, N_CLIPS)] = 1

    def member(good: np.ndarray) -> np.ndarray:
        informative = 1 / (1 + np.exp(-(3 * (2 * labels - 1) + rng.normal(0, 1.5, labels.shape))))
        return np.where(good[None, :], informative, rng.random(labels.shape)).astype(np.float32)

    half = np.arange(N_CLASSES) < N_CLASSES // 2
    return np.stack([member(half), member(~half)]), labels


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One k-fold fit, with every ``Model.fit`` call's training rows and the rows its early stopping
    scores recorded."""
    scores, labels = synthetic_members()
    x = scores.transpose(1, 2, 0)
    trained, validated = [], []
    original_fit, original_lrap_on = keras.Model.fit, train_module._lrap_on

    def recording_fit(model, x_train, y_train, **kwargs):
        trained.append(np.array(x_train))
        return original_fit(model, x_train, y_train, **kwargs)

    def recording_lrap_on(x_val, y_val):
        validated.append(np.array(x_val))
        return original_lrap_on(x_val, y_val)

    out = tmp_path_factory.mktemp("stacker")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.Model, "fit", recording_fit)
        patch.setattr(train_module, "_lrap_on", recording_lrap_on)
        fit = fit_stacker(x, labels, x[:20], [1.0, 1.0], CONFIG, out)
    return scores, labels, fit, list(zip(trained, validated))


def _row_ids(x: np.ndarray, rows: np.ndarray) -> set[int]:
    """Which rows of ``x`` the arrays in ``rows`` are (every synthetic row is unique)."""
    index = {row.tobytes(): i for i, row in enumerate(x)}
    return {index[row.tobytes()] for row in rows}


def test_stacker_beats_every_blend_when_members_have_per_class_strengths(fitted):
    scores, labels, fit, _ = fitted
    blend_scores = {name: lwlrap(labels, blend(scores)) for name, blend in blends([1.0, 1.0]).items()}
    stacked = lwlrap(labels, fit.oof)
    print(f"stacker OOF lwlrap {stacked:.4f} vs blends {blend_scores}")
    assert stacked >= max(blend_scores.values()) + 0.02, (stacked, blend_scores)


def test_per_class_weights_keep_unit_norm_after_training(fitted):
    _, _, fit, _ = fitted
    for path in fit.model_paths:
        kernel = np.asarray(keras.models.load_model(path, compile=False).get_layer("per_class_blend").kernel)
        assert kernel.shape == (N_CLASSES, 3, 1)
        np.testing.assert_allclose(np.linalg.norm(kernel, axis=1), 1.0, atol=1e-5)
        # Trained: the weights left the pure weighted-mean init and favour each class's good member.
        assert np.all(kernel[:5, 0, 0] > kernel[:5, 1, 0]) and np.all(kernel[5:, 1, 0] > kernel[5:, 0, 0])


def test_stacker_oof_rows_come_only_from_the_fold_model_that_never_trained_on_them(fitted):
    scores, _, fit, calls = fitted
    x = scores.transpose(1, 2, 0)
    assert len(calls) == N_FOLDS and sorted(set(fit.folds)) == list(range(N_FOLDS))
    for k, (x_train, x_val) in enumerate(calls):
        held_out = set(np.flatnonzero(fit.folds == k))
        trained_on = _row_ids(x, x_train)
        assert not trained_on & held_out
        assert trained_on | held_out == set(range(N_CLIPS)) and _row_ids(x, x_val) == held_out
        # The saved fold model reproduces exactly the OOF rows of its own fold.
        model = keras.models.load_model(fit.model_paths[k], compile=False)
        rows = np.flatnonzero(fit.folds == k)
        np.testing.assert_allclose(np.asarray(model(x[rows])), fit.oof[rows], rtol=1e-5, atol=1e-6)
    assert np.isfinite(fit.oof).all()


def test_stacked_test_scores_are_the_mean_over_fold_models(fitted):
    scores, _, fit, _ = fitted
    x_test = scores.transpose(1, 2, 0)[:20]
    models = [keras.models.load_model(p, compile=False) for p in fit.model_paths]
    expected = np.mean([np.asarray(m(x_test)) for m in models], axis=0)
    np.testing.assert_allclose(fit.test, expected, rtol=1e-5, atol=1e-6)
    assert [Path(p).name for p in fit.model_paths] == [f"stacker_fold{k}.keras" for k in range(N_FOLDS)]
    assert [s["fold"] for s in fit.summaries] == list(range(N_FOLDS))
    assert all(0 <= s["best_epoch"] <= s["epochs"] <= CONFIG.max_epochs for s in fit.summaries)
