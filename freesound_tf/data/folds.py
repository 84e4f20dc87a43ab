"""Stratified K-fold assignment and its ``folds.csv`` file (columns ``fname,fold``)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from freesound_tf.data.layout import DataValidationError
from freesound_tf.locking import atomic_path
from freesound_tf.extras import require


def make_folds(labels: np.ndarray, n_splits: int, seed: int, multilabel: bool = True) -> np.ndarray:
    """Fold id (0..n_splits-1) of every clip, stratified on its labels.

    Multi-label uses iterative stratification (iterstrat), which balances every class's
    frequency across folds, rare ones included. Single-label stratifies on the argmax
    class with scikit-learn and needs every class to have at least ``n_splits`` clips.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"make_folds: labels must be (clips, classes), got shape {labels.shape}")
    n = labels.shape[0]
    if n_splits < 2:
        raise ValueError(f"make_folds: n_splits={n_splits}; use at least 2")
    if n_splits > n:
        raise ValueError(f"make_folds: n_splits={n_splits} exceeds the {n} clips; lower n_splits")
    placeholder = np.zeros((n, 1))
    if multilabel:
        stratifiers = require("iterstrat.ml_stratifiers", "multi-label folds")
        splitter = stratifiers.MultilabelStratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        target = labels
    else:
        positives = (labels > 0).sum(axis=1)
        if np.any(positives != 1):
            row = int(np.flatnonzero(positives != 1)[0])
            raise ValueError(f"make_folds: clip {row} has {positives[row]} labels; single-label "
                             "folds need exactly one per clip (pass multilabel=True)")
        target = labels.argmax(axis=1)
        counts = np.bincount(target, minlength=labels.shape[1])
        rare = [(c, int(k)) for c, k in enumerate(counts) if 0 < k < n_splits]
        if rare:
            cls, count = rare[0]
            raise ValueError(f"make_folds: class {cls} has only {count} clip(s), fewer than "
                             f"n_splits={n_splits}; lower n_splits to {max(2, count)} or use "
                             "multilabel=True")
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    folds = np.full(n, -1, dtype=np.int64)
    for fold, (_, val_idx) in enumerate(splitter.split(placeholder, target)):
        folds[val_idx] = fold
    return folds


def save_folds(path: str | Path, fnames: Sequence[str], folds: np.ndarray) -> None:
    """Write ``folds.csv`` (``fname,fold``), creating the parent folder."""
    folds = np.asarray(folds)
    if len(fnames) != len(folds):
        raise ValueError(f"save_folds: {len(fnames)} fnames but {len(folds)} fold ids")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # two processes preparing one work folder never see half a file
        pd.DataFrame({"fname": list(fnames), "fold": folds.astype(np.int64)}).to_csv(tmp, index=False)


def load_folds(path: str | Path) -> pd.DataFrame:
    """Read ``folds.csv`` into a frame with ``fname`` (str) and ``fold`` (int) columns."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: folds file not found; create it with save_folds "
                                  "(training writes it on its first run)")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise DataValidationError(f"{path}: malformed folds file ({str(err).strip()}); "
                                  "delete it to have it regenerated") from None
    if list(table.columns) != ["fname", "fold"]:
        raise DataValidationError(f"{path}:1: header is {list(table.columns)}, expected "
                                  "['fname', 'fold']; delete the file to have it regenerated")
    bad = ~table["fold"].str.fullmatch(r"\d+")
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataValidationError(f"{path}:{row + 2}: fold {table['fold'].iloc[row]!r} is not a "
                                  "non-negative integer; delete the file to have it regenerated")
    duplicated = table["fname"].duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise DataValidationError(f"{path}:{row + 2}: duplicate fname {table['fname'].iloc[row]!r}; "
                                  "delete the file to have it regenerated")
    return table.assign(fold=table["fold"].astype(np.int64))
