"""K-fold training of the stacker on the members' OOF scores.

Each stacker fold model trains on the other folds' rows, stops early on its own fold (best weights
restored) and scores only that fold: the stacker's OOF row of a clip always comes from the one
model that never trained on it. Test scores are the mean over the fold models.

Stopping (``StackerConfig.stop_on``): ``"lrap"`` is seed 004's rule, the validation fold's
label-ranking average precision scored before the first epoch (the untrained stacker, i.e. the
weighted-mean blend, can win) and after every epoch, stopping once ``patience`` scores in a row
did not beat the best; ``"bce"`` watches the validation BCE instead, which is smooth where LRAP on
a few hundred clips jumps with ties.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from sklearn.metrics import label_ranking_average_precision_score

from freesound_tf.config import StackerConfig
from freesound_tf.data.folds import make_folds
from freesound_tf.metrics import lwlrap
from freesound_tf.stacking.model import build_stacker
from freesound_tf.training.checkpoints import save_model_atomic

_PREDICT_BATCH = 4096


class BestScoreStopping(keras.callbacks.Callback):
    """Seed 004's stacker stopping: ``score(model)`` before the first epoch and after each one; training
    stops once ``patience`` scores in a row did not beat the best strictly, and ends with the best
    weights. ``best_epoch`` counts the epochs trained when the best score was taken (0: untrained)."""

    def __init__(self, score: Callable[[keras.Model], float], patience: int) -> None:
        super().__init__()
        self.score, self.patience = score, patience
        self.best_epoch, self.best_score, self.best_weights = 0, -np.inf, None
        self.scores: list[float] = []

    def _take(self, trained_epochs: int) -> float:
        value = float(self.score(self.model))
        self.scores.append(value)
        if value > self.best_score:
            self.best_epoch, self.best_score, self.best_weights = trained_epochs, value, self.model.get_weights()
        return value

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.scores, self.best_score = [], -np.inf
        self._take(0)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = self._take(epoch + 1)
        if logs is not None:
            logs["val_score"] = value
        if epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        self.model.set_weights(self.best_weights)


def _lrap_on(x: np.ndarray, y: np.ndarray) -> Callable[[keras.Model], float]:
    """A model's label-ranking average precision on rows ``x`` with labels ``y`` (sklearn's, as the seed)."""
    return lambda model: label_ranking_average_precision_score(y, np.asarray(model.predict_on_batch(x)))


@dataclass
class StackerFit:
    oof: np.ndarray  # (clips, classes), each row from the fold model that held it out
    test: np.ndarray  # (test clips, classes), mean over fold models
    folds: np.ndarray  # stacker fold of every OOF row
    summaries: list[dict]
    model_paths: list[Path]


def fit_stacker(member_oof: np.ndarray, labels: np.ndarray, member_test: np.ndarray, weights: Sequence[float],
                config: StackerConfig, out_dir: Path | None, multilabel: bool = True, verbose: int = 0,
                groups: Sequence[str] | None = None) -> StackerFit:
    """Train ``config.folds.n_splits`` stackers on ``member_oof`` (clips, classes, members); with ``groups``
    (the members' recording / speaker per clip), clips of one group share a stacker fold.

    Saves ``stacker_fold{k}.keras`` into ``out_dir`` and prints a line per fold; with ``out_dir=None``
    (the nested check of :mod:`freesound_tf.stacking.choice`) neither.
    """
    n_classes = labels.shape[1]
    labels = labels.astype(np.float32)
    folds = make_folds(labels, config.folds.n_splits, config.folds.seed, multilabel=multilabel, groups=groups)
    oof = np.full(labels.shape, np.nan, np.float32)
    test = np.zeros((member_test.shape[0], n_classes), np.float32)
    summaries, paths = [], []
    for k in range(config.folds.n_splits):
        train_idx, val_idx = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        keras.utils.set_random_seed(config.folds.seed + k)
        model = build_stacker(n_classes, weights, config.shift, config.label_correlation)
        model.compile(optimizer=keras.optimizers.Nadam(learning_rate=config.lr), loss="binary_crossentropy")
        val_x, val_y = member_oof[val_idx], labels[val_idx]
        if config.stop_on == "lrap":
            stop = BestScoreStopping(_lrap_on(val_x, val_y), config.patience)
            validation = None
        else:
            stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
            validation = (val_x, val_y)
        history = model.fit(member_oof[train_idx], labels[train_idx], batch_size=config.batch_size,
                            epochs=config.max_epochs, validation_data=validation, callbacks=[stop], shuffle=True,
                            verbose=verbose)
        # Epochs trained when the kept weights were scored (Keras' EarlyStopping counts from 0 after one).
        best_epoch = stop.best_epoch if config.stop_on == "lrap" else stop.best_epoch + 1
        oof[val_idx] = model.predict(member_oof[val_idx], batch_size=_PREDICT_BATCH, verbose=0)
        test += model.predict(member_test, batch_size=_PREDICT_BATCH, verbose=0) / config.folds.n_splits
        summary = {"fold": k, "val_lwlrap": lwlrap(labels[val_idx], oof[val_idx]), "best_epoch": best_epoch,
                   "epochs": len(history.history["loss"]), "train_clips": len(train_idx), "val_clips": len(val_idx)}
        summaries.append(summary)
        if out_dir is None:
            continue
        paths.append(out_dir / f"stacker_fold{k}.keras")
        save_model_atomic(model, paths[-1])
        print(f"[stacker] fold {k}: val lwlrap {summary['val_lwlrap']:.4f} (best after {summary['best_epoch']} of "
              f"{summary['epochs']} epochs, {summary['train_clips']} train / {summary['val_clips']} val clips)",
              flush=True)
    return StackerFit(oof, test, folds, summaries, paths)
