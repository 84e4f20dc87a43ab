"""Synthetic waveform caches for the benchmarks: WAV clips written once, then cached like real data."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf


class Folder:
    """A cacheable split: every WAV of a folder."""

    def __init__(self, name: str, root: Path, n: int) -> None:
        self.name, self.root = name, root
        self.fnames = [f"c{k:06d}.wav" for k in range(n)]

    def paths(self) -> list[Path]:
        return [self.root / f for f in self.fnames]


def noise(rng: np.random.Generator, length: int, sample_rate: int) -> np.ndarray:
    return (0.1 * rng.normal(size=length)).astype(np.float32)


def tones_and_bursts(rng: np.random.Generator, length: int, sample_rate: int) -> np.ndarray:
    """Harmonic tones plus gated noise: something for pitch/tempo effects to change."""
    t = np.arange(length) / sample_rate
    tone = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate(rng.uniform(100, 2000, 3)))
    bursts = rng.normal(size=length) * (np.sin(2 * np.pi * rng.uniform(0.5, 4) * t) > 0.5)
    return (0.15 * tone + 0.1 * bursts).astype(np.float32)


def synthetic_cache(work: Path, name: str, n: int, seconds: tuple[float, float], sample_rate: int,
                    signal: Callable[[np.random.Generator, int, int], np.ndarray] = noise, seed: int = 0,
                    workers: int | None = 1) -> Path:
    """HDF5 cache of ``n`` clips (lengths uniform in ``seconds``) under ``work/name``; reused when there."""
    from freesound_tf.config import AudioConfig
    from freesound_tf.data.cache import build_cache

    folder = Path(work) / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    split = Folder(name, folder, n)
    for path in split.paths():
        length = int(rng.uniform(*seconds) * sample_rate)
        if not path.exists():
            sf.write(path, signal(rng, length, sample_rate), sample_rate, subtype="PCM_16")
    audio = AudioConfig(sample_rate=sample_rate, trim_top_db=0.0)
    return build_cache(split, audio, Path(work) / "cache", workers=workers, progress=False)
