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


def make_folds(labels: np.ndarray, n_splits: int, seed: int, multilabel: bool = True,
               groups: Sequence[str] | np.ndarray | None = None) -> np.ndarray:
    """Fold id (0..n_splits-1) of every clip, stratified on its labels.

    Multi-label uses iterative stratification (iterstrat), which balances every class's
    frequency across folds, rare ones included. Single-label stratifies on the argmax
    class with scikit-learn and needs every class to have at least ``n_splits`` clips.
    With ``groups`` (one id per clip: recording, speaker, source; empty = a group of its own),
    clips sharing a group always share a fold, so out-of-fold scores are those of unheard recordings.
    """
    labels = np.asarray(labels)
    if groups is not None:
        return _group_folds(labels, n_splits, seed, multilabel, groups)
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


def _group_folds(labels: np.ndarray, n_splits: int, seed: int, multilabel: bool,
                 groups: Sequence[str] | np.ndarray) -> np.ndarray:
    """:func:`make_folds` over whole groups.

    Groups go, biggest first (ties in seeded random order), to the fold where the per-class label
    counts and the clip counts stay most even across folds (the greedy rule of scikit-learn's
    StratifiedGroupKFold, extended to multi-label counts): a recording with many clips of a rare class
    cannot leave a fold without that class when another assignment avoids it.
    """
    groups = np.asarray(groups, dtype=object)
    if groups.shape != (labels.shape[0],):
        raise ValueError(f"make_folds: {groups.shape[0]} group ids for {labels.shape[0]} clips; give one per clip")
    if not multilabel and np.any((labels > 0).sum(axis=1) != 1):
        raise ValueError("make_folds: single-label folds need exactly one label per clip (pass multilabel=True)")
    named = np.array([g if g not in ("", None) else f"\0clip {i}" for i, g in enumerate(groups)], dtype=object)
    codes, unique = pd.factorize(named)
    if len(unique) < n_splits:
        raise ValueError(f"make_folds: the clips form only {len(unique)} group(s), fewer than n_splits={n_splits}; "
                         "lower folds.n_splits or give more distinct values in the group column")
    counts = np.zeros((len(unique), labels.shape[1]))
    np.add.at(counts, codes, (labels > 0).astype(np.float64))
    sizes = np.bincount(codes).astype(np.float64)
    order = np.random.default_rng(seed).permutation(len(unique))
    order = order[np.argsort(-sizes[order], kind="stable")]
    class_totals = np.maximum(counts.sum(axis=0), 1.0)
    fold_counts, fold_sizes = np.zeros((n_splits, labels.shape[1])), np.zeros(n_splits)
    group_fold = np.empty(len(unique), np.int64)
    for left, g in enumerate(order):
        trial_counts = fold_counts[None] + np.eye(n_splits)[:, :, None] * counts[g]  # (choice, fold, class)
        trial_sizes = fold_sizes[None] + np.eye(n_splits) * sizes[g]
        cost = (trial_counts / class_totals).std(axis=1).sum(axis=1) + (trial_sizes / len(codes)).std(axis=1)
        empty = np.flatnonzero(fold_sizes == 0)
        if len(unique) - left == len(empty):  # as many groups left as empty folds: every fold gets one
            cost[np.setdiff1d(np.arange(n_splits), empty)] = np.inf
        fold = int(np.argmin(cost))
        group_fold[g] = fold
        fold_counts[fold] += counts[g]
        fold_sizes[fold] += sizes[g]
    return group_fold[codes]


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
