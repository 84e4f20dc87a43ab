"""K-fold training of the stacker on the members' OOF scores.

Each stacker fold model trains on the other folds' rows, stops early on its own fold's BCE
(best weights restored) and scores only that fold: the stacker's OOF row of a clip always comes
from the one model that never trained on it. Test scores are the mean over the fold models.
Early stopping watches the validation loss rather than lwlrap: it is smooth where lwlrap on a
few hundred clips jumps with ties, so picking its minimum selects less on the rows it then scores.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from freesound_tf.config import StackerConfig
from freesound_tf.data.folds import make_folds
from freesound_tf.metrics import lwlrap
from freesound_tf.stacking.model import build_stacker
from freesound_tf.training.checkpoints import save_model_atomic

_PREDICT_BATCH = 4096


@dataclass
class StackerFit:
    oof: np.ndarray  # (clips, classes), each row from the fold model that held it out
    test: np.ndarray  # (test clips, classes), mean over fold models
    folds: np.ndarray  # stacker fold of every OOF row
    summaries: list[dict]
    model_paths: list[Path]


def fit_stacker(member_oof: np.ndarray, labels: np.ndarray, member_test: np.ndarray, weights: Sequence[float],
                config: StackerConfig, out_dir: Path, multilabel: bool = True, verbose: int = 0) -> StackerFit:
    """Train ``config.folds.n_splits`` stackers on ``member_oof`` (clips, classes, members).

    Saves ``stacker_fold{k}.keras`` into ``out_dir``.
    """
    n_classes = labels.shape[1]
    labels = labels.astype(np.float32)
    folds = make_folds(labels, config.folds.n_splits, config.folds.seed, multilabel=multilabel)
    oof = np.full(labels.shape, np.nan, np.float32)
    test = np.zeros((member_test.shape[0], n_classes), np.float32)
    summaries, paths = [], []
    for k in range(config.folds.n_splits):
        train_idx, val_idx = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        keras.utils.set_random_seed(config.folds.seed + k)
        model = build_stacker(n_classes, weights, config.shift)
        model.compile(optimizer=keras.optimizers.Nadam(learning_rate=config.lr), loss="binary_crossentropy")
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
        history = model.fit(member_oof[train_idx], labels[train_idx], batch_size=config.batch_size,
                            epochs=config.max_epochs, validation_data=(member_oof[val_idx], labels[val_idx]),
                            callbacks=[stop], shuffle=True, verbose=verbose)
        oof[val_idx] = model.predict(member_oof[val_idx], batch_size=_PREDICT_BATCH, verbose=0)
        test += model.predict(member_test, batch_size=_PREDICT_BATCH, verbose=0) / config.folds.n_splits
        path = out_dir / f"stacker_fold{k}.keras"
        save_model_atomic(model, path)
        paths.append(path)
        summary = {"fold": k, "val_lwlrap": lwlrap(labels[val_idx], oof[val_idx]), "best_epoch": stop.best_epoch + 1,
                   "epochs": len(history.history["loss"]), "train_clips": len(train_idx), "val_clips": len(val_idx)}
        summaries.append(summary)
        print(f"[stacker] fold {k}: val lwlrap {summary['val_lwlrap']:.4f} (best epoch {summary['best_epoch']}/"
              f"{summary['epochs']}, {summary['train_clips']} train / {summary['val_clips']} val clips)", flush=True)
    return StackerFit(oof, test, folds, summaries, paths)
