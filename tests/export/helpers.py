"""Library-side references for export tests: the library's own predictions of in-memory clips."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from freesound_tf.data.memory import ClipsInMemory
from freesound_tf.inference import predict_clips
from freesound_tf.training.run_folder import load_run


def library_scores(run_dir: Path, clips: list[np.ndarray]) -> np.ndarray:
    """(clips, classes): the library's TTA prediction (clips trimmed as the cache trims them), mean over
    the run's fold models."""
    run = load_run(run_dir)
    cache = ClipsInMemory(clips, run.recipe.audio)
    rows = np.arange(len(clips))
    return np.mean([predict_clips(model, cache, rows, run.recipe) for model in run.models], axis=0)


def random_clips(lengths: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = [np.arange(n) / 8000.0 for n in lengths]
    return [(0.3 * np.sin(2 * np.pi * 440 * (k + 1) * tt) + 0.1 * rng.standard_normal(len(tt))).astype(np.float32)
            for k, tt in enumerate(t)]


def clips_with_silence(seed: int = 0) -> list[np.ndarray]:
    """Sounds with quiet leading and trailing parts of different lengths, as recordings have."""
    rng = np.random.default_rng(seed)
    out = []
    for k, (lead, sound, tail) in enumerate([(3000, 6000, 5000), (700, 2500, 9000), (12000, 9000, 300)]):
        tone = 0.4 * np.sin(2 * np.pi * (300 + 150 * k) * np.arange(sound) / 8000.0) * np.hanning(sound)
        clip = np.concatenate([np.zeros(lead), tone + 0.02 * rng.standard_normal(sound), np.zeros(tail)])
        out.append((clip + 1e-5 * rng.standard_normal(len(clip))).astype(np.float32))
    return out
