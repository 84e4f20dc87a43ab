"""Seed 000's use of the noisy set: (pseudo-labelled) noisy clips join the curated TRAINING folds.

``train.noisy_in_finetune``: "split" gives fold k the k-th of n_splits disjoint parts of the noisy
clips (seed 000's default: a KFold over the noisy table, fold k taking its k-th held-out part), "all"
gives every fold all of them (its ``--share_noisy``). Validation, OOF predictions and the best-epoch
choice stay on curated clips only. The noisy clips are those the noisy CSV lists (``--noisy-csv``
replaces it, e.g. with ``freesound-tf relabel``'s output).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from freesound_tf.config import ConfigError, FoldsConfig
from freesound_tf.data.cache import WaveformCache
from freesound_tf.data.joined_cache import JoinedCache
from freesound_tf.data.prepare import PreparedData


@dataclass
class NoisyClips:
    """The noisy cache, its labels per cache row, the listed clips' rows and how folds share them."""

    cache: WaveformCache
    labels: np.ndarray
    rows: np.ndarray
    how: str  # "split" | "all"
    n_splits: int
    seed: int

    def fold_rows(self, k: int) -> np.ndarray:
        """Noisy cache rows that train fold ``k``."""
        if self.how == "all":
            return self.rows
        shuffled = np.random.default_rng(self.seed).permutation(self.rows)
        return np.sort(np.array_split(shuffled, self.n_splits)[k])

    def joined_with(self, curated: WaveformCache, labels: np.ndarray, train_idx: np.ndarray,
                    k: int) -> tuple[JoinedCache, np.ndarray, np.ndarray]:
        """(cache, labels per row, training rows): fold ``k``'s curated training clips plus its noisy clips."""
        joined = JoinedCache(curated, self.cache)
        return (joined, np.concatenate([labels, self.labels]),
                np.concatenate([train_idx, len(curated) + self.fold_rows(k)]))


def open_noisy_clips(data: PreparedData, how: str, folds: FoldsConfig) -> NoisyClips | None:
    """The noisy clips of ``data`` for ``train.noisy_in_finetune = how`` (None for "none"); close ``.cache``."""
    if how == "none":
        return None
    if "noisy" not in data.splits:
        raise ConfigError("train.noisy_in_finetune: the prepared data has no noisy split (FAT2019 "
                          "train_noisy.csv or --noisy-csv); prepare it or set 'none'")
    split = data.splits["noisy"]
    cache = split.open()
    return NoisyClips(cache, split.labels(cache, allow_extra=True), split.rows(cache), how, folds.n_splits, folds.seed)
