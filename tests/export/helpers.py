"""Library-side references for export tests: an in-memory cache and the library's own predictions."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from freesound_tf.config import AudioConfig
from freesound_tf.data.features import global_features, length_feature
from freesound_tf.inference import predict_clips
from freesound_tf.training.run_folder import load_run


class MemoryCache:
    """The CacheReader interface over float clips held in memory (no trimming, as the served graph)."""

    def __init__(self, clips: list[np.ndarray], audio: AudioConfig) -> None:
        self.clips = clips
        self.steps = audio.global_steps
        self.lengths = np.array([len(c) for c in clips])
        self.length_feature = np.array([length_feature(len(c), audio.sample_rate, audio.length_norm_seconds)
                                        for c in clips], np.float32)
        self._features = np.stack([global_features(c, self.steps) for c in clips])

    def read(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.clips[i][start:stop]

    def read_global_features(self, indices) -> np.ndarray:
        return self._features[np.asarray(indices)]


def library_scores(run_dir: Path, clips: list[np.ndarray]) -> np.ndarray:
    """(clips, classes): the library's TTA prediction, mean over the run's fold models."""
    import freesound_tf.models  # noqa: F401  (custom layers)

    run = load_run(run_dir)
    cache = MemoryCache(clips, run.recipe.audio)
    rows = np.arange(len(clips))
    scores = [predict_clips(keras.models.load_model(p, compile=False), cache, rows, run.recipe)
              for p in run.fold_models]
    return np.mean(scores, axis=0)


def random_clips(lengths: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = [np.arange(n) / 8000.0 for n in lengths]
    return [(0.3 * np.sin(2 * np.pi * 440 * (k + 1) * tt) + 0.1 * rng.standard_normal(len(tt))).astype(np.float32)
            for k, tt in enumerate(t)]
