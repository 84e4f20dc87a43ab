"""Clips held in memory behind the cache-reader interface, prepared the way the cache prepares them.

The waveform cache decodes, resamples and trims each file and computes its global statistics once.
:class:`ClipsInMemory` does the same to arrays a caller already holds (a notebook's audio, a
served request), so the library's prediction code scores them exactly as cached clips.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import soxr

from freesound_tf.config import AudioConfig
from freesound_tf.data.audio import trim_silence
from freesound_tf.data.features import global_features, length_feature


def as_clip_list(waveforms: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """float32 mono clips from a (clips, samples) array or a sequence of 1-D arrays; bad input fails
    with one line naming the clip."""
    if isinstance(waveforms, np.ndarray) and waveforms.ndim == 2:
        waveforms = list(waveforms)
    elif isinstance(waveforms, np.ndarray) and waveforms.ndim != 2:
        raise ValueError(f"waveforms: expected (clips, samples) or a list of 1-D clips, got shape {waveforms.shape}")
    clips = []
    for k, clip in enumerate(waveforms):
        clip = np.asarray(clip, np.float32)
        if clip.ndim != 1:
            raise ValueError(f"waveforms[{k}]: expected a 1-D mono clip, got shape {clip.shape}; average the channels")
        if clip.size == 0:
            raise ValueError(f"waveforms[{k}]: empty clip (0 samples)")
        if not np.all(np.isfinite(clip)):
            raise ValueError(f"waveforms[{k}]: contains NaN or Inf samples")
        clips.append(clip)
    return clips


def resample_clips(clips: list[np.ndarray], sample_rate: int, target_rate: int) -> list[np.ndarray]:
    """Clips at ``sample_rate`` resampled to ``target_rate`` as decoding does (soxr HQ, clipped to [-1, 1])."""
    if sample_rate == target_rate:
        return clips
    return [np.clip(soxr.resample(c, sample_rate, target_rate, quality="HQ"), -1.0, 1.0).astype(np.float32)
            for c in clips]


class ClipsInMemory:
    """The ``CacheReader`` interface over in-memory clips at ``audio.sample_rate``.

    As the cache: each clip trimmed by ``audio.trim_top_db`` (unless ``trim=False``), global
    statistics of the untrimmed clip, length feature of the trimmed one. (The cache also stores
    samples as int16; here they stay float32, a difference of at most 1.5e-5 per sample.)
    """

    def __init__(self, clips: Sequence[np.ndarray], audio: AudioConfig, trim: bool = True) -> None:
        clips = as_clip_list(clips)
        self.steps = audio.global_steps
        self._features = np.stack([global_features(c, self.steps) for c in clips]) if clips else \
            np.zeros((0, self.steps, 12), np.float32)
        self.clips = [trim_silence(c, audio.trim_top_db)[0] if trim else c for c in clips]
        self.lengths = np.array([len(c) for c in self.clips], np.int64)
        self.length_feature = np.array([length_feature(n, audio.sample_rate, audio.length_norm_seconds)
                                        for n in self.lengths], np.float32)

    @classmethod
    def resampled(cls, waveforms: np.ndarray | Sequence[np.ndarray], sample_rate: int,
                  audio: AudioConfig) -> ClipsInMemory:
        """Clips at ``sample_rate``, resampled to ``audio.sample_rate``."""
        return cls(resample_clips(as_clip_list(waveforms), sample_rate, audio.sample_rate), audio)

    def read(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.clips[i][start:stop]

    def read_global_features(self, indices) -> np.ndarray:
        return self._features[np.asarray(indices)]
