"""Two waveform caches read as one: rows of the first, then rows of the second.

Seed 000 trains each curated fold together with (relabelled) noisy clips, which live in the noisy
split's cache; the input pipeline and prediction read clips by row from one cache reader.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from freesound_tf.data.cache import WaveformCache


class JoinedCache:
    """Read-only view of ``first`` followed by ``second`` (what :class:`freesound_tf.data.pipeline.CacheReader`
    needs, plus ``fnames``): row ``len(first) + i`` is row ``i`` of ``second``."""

    def __init__(self, first: WaveformCache, second: WaveformCache) -> None:
        if first.steps != second.steps or first.sample_rate != second.sample_rate:
            raise ValueError(f"{second.path}: global steps / sample rate differ from {first.path}; "
                             "build both caches with the same audio settings")
        self.first, self.second = first, second
        self.offset = len(first)
        self.steps = first.steps
        self.sample_rate = first.sample_rate
        self.fnames = list(first.fnames) + list(second.fnames)
        self.lengths = np.concatenate([first.lengths, second.lengths])
        self.length_feature = np.concatenate([first.length_feature, second.length_feature])

    def __len__(self) -> int:
        return len(self.fnames)

    def read(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        if i < self.offset:
            return self.first.read(i, start, stop)
        return self.second.read(i - self.offset, start, stop)

    def read_global_features(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.zeros((len(idx), self.steps, 12), np.float32)
        in_first = idx < self.offset
        if in_first.any():
            out[in_first] = self.first.read_global_features(idx[in_first])
        if (~in_first).any():
            out[~in_first] = self.second.read_global_features(idx[~in_first] - self.offset)
        return out
