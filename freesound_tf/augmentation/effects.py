"""Seed 000's audio-effect augmentation: pitch shift, tempo change, overdrive and reverb per clip.

The heavy signal work runs in C++ that releases the GIL (pedalboard's Rubber Band time stretcher
and Freeverb reverb, soxr's resampler, numpy's tanh), so the tf.data map calls that run
``TrainInput._load`` in parallel threads and the thread pool of :meth:`EffectChain.batch` use
every core instead of queueing on the interpreter.

Every effect keeps the clip's length. The chain runs on the training crop, so it composes with
any cropping policy: a faster tempo leaves up to ``1 - 1/tempo`` of the window silent (20 % at
1.25) and a slower one drops the excess, the kept window placed at a random offset the way
``crop_clip`` places clips shorter than the window. The output has the input's peak level: the
effects change the sound, not its loudness, and stay as bounded as the input.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import soxr

from freesound_tf.config import AugmentConfig
from freesound_tf.extras import require

_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    """The shared pool of ``workers`` threads (0: one per core), created on first use."""
    workers = workers or os.cpu_count() or 1
    if workers not in _POOLS:  # importing the module starts no threads
        _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="effects")
    return _POOLS[workers]


@dataclass(frozen=True)
class EffectDraw:
    """One clip's effect parameters; the neutral value of a parameter switches its effect off."""

    semitones: float = 0.0  # pitch shift, duration kept
    tempo: float = 1.0  # speed factor (> 1 faster), pitch kept
    drive_db: float = 0.0  # overdrive
    room_size: float = 0.0  # reverb (with wet_level > 0)
    wet_level: float = 0.0
    position: float = 0.5  # where a tempo change's crop / pad back places the window, in [0, 1]


def pitch_tempo(clip: np.ndarray, sample_rate: int, semitones: float, tempo: float) -> np.ndarray:
    """Shift by ``semitones`` and speed up by ``tempo``; the result has ``len(clip) / tempo`` samples.

    Rubber Band stretches by ``tempo / ratio``, then soxr resamples by the pitch ratio: one stretcher
    pass either way, half the cost of Rubber Band's own pitch shifting. Its faster engine with the
    short FFT window costs about 30 ms of CPU per 5 s at 44.1 kHz (a quarter of the high-quality
    default, on par with librosa's phase vocoder, which holds the GIL), plenty for augmentation.
    """
    ratio = 2.0 ** (semitones / 12.0)
    out = np.ascontiguousarray(clip, np.float32)
    if abs(tempo / ratio - 1.0) > 1e-6:
        pedalboard = require("pedalboard", "audio effects")  # training extra
        out = pedalboard.time_stretch(out, sample_rate, stretch_factor=tempo / ratio, high_quality=False,
                                      use_long_fft_window=False)[0]
    if semitones != 0.0:
        out = soxr.resample(out, sample_rate * ratio, sample_rate)
    return out


def overdrive(clip: np.ndarray, gain_db: float) -> np.ndarray:
    """tanh soft clipping of the peak-normalized clip driven by ``gain_db``, back at the input's peak.

    Normalizing first makes the amount of distortion depend on ``gain_db`` only, not on how loud
    the recording is.
    """
    peak = float(np.max(np.abs(clip)))
    if not peak > 0:
        return clip
    gain = 10.0 ** (gain_db / 20.0)
    return (np.tanh(clip * (gain / peak)) * (peak / math.tanh(gain))).astype(np.float32)


def reverb(clip: np.ndarray, sample_rate: int, room_size: float, wet_level: float) -> np.ndarray:
    """Freeverb with ``wet_level`` of reverberated and ``1 - wet_level`` of dry signal; tail cut at the clip end."""
    pedalboard = require("pedalboard", "audio effects")  # training extra
    plugin = pedalboard.Reverb(room_size=room_size, wet_level=wet_level, dry_level=1.0 - wet_level)
    return plugin(np.ascontiguousarray(clip, np.float32), sample_rate)


def fit_length(clip: np.ndarray, length: int, position: float) -> np.ndarray:
    """Crop or zero-pad ``clip`` to ``length`` samples, the window at relative ``position`` in [0, 1]."""
    span = abs(len(clip) - length)
    offset = min(int(position * (span + 1)), span)
    if len(clip) >= length:
        return clip[offset:offset + length]
    out = np.zeros(length, np.float32)
    out[offset:offset + len(clip)] = clip
    return out


class EffectChain:
    """Draws and applies the effects of :class:`AugmentConfig` to float32 mono clips.

    All randomness comes from the ``numpy.random.Generator`` passed in: the same seed gives the
    same output, whatever the thread scheduling.
    """

    def __init__(self, config: AugmentConfig, sample_rate: int, threads: bool = True, workers: int = 0) -> None:
        self.config = config
        self.sample_rate = sample_rate
        self.threads = threads  # False: :meth:`batch` runs its clips one after another in the caller's thread
        self.workers = workers  # threads of :meth:`batch` (0: one per core)

    def draw(self, rng: np.random.Generator) -> EffectDraw:
        """Which effects a clip gets (each with its own probability) and their parameters."""
        c = self.config
        coin, u = rng.random(4), rng.random(6)  # fixed draw count: one clip's choices never shift the next's

        def between(r: tuple[float, ...], x: float) -> float:
            return float(r[0] + (r[1] - r[0]) * x)

        log_tempo = between((math.log(c.tempo_range[0]), math.log(c.tempo_range[1])), u[1])
        reverb_on = coin[2] < c.p_reverb
        return EffectDraw(
            semitones=between(c.pitch_semitones, u[0]) if coin[0] < c.p_pitch else 0.0,
            tempo=math.exp(log_tempo) if coin[1] < c.p_tempo else 1.0,
            drive_db=between(c.overdrive_gain_db, u[2]) if coin[3] < c.p_overdrive else 0.0,
            room_size=between(c.reverb_room_size, u[3]) if reverb_on else 0.0,
            wet_level=between(c.reverb_wet_level, u[4]) if reverb_on else 0.0,
            position=float(u[5]),
        )

    def apply(self, clip: np.ndarray, draw: EffectDraw) -> np.ndarray:
        """Pitch / tempo, crop or pad back to ``len(clip)``, overdrive, reverb; the input's peak level."""
        peak = float(np.max(np.abs(clip))) if len(clip) else 0.0
        if not peak > 0:  # silence (or a non-finite clip) stays as it is
            return clip
        out = np.asarray(clip, np.float32)
        if draw.semitones != 0.0 or draw.tempo != 1.0:
            out = fit_length(pitch_tempo(out, self.sample_rate, draw.semitones, draw.tempo), len(clip), draw.position)
        if draw.drive_db > 0:
            out = overdrive(out, draw.drive_db)
        if draw.wet_level > 0:
            out = reverb(out, self.sample_rate, draw.room_size, draw.wet_level)
        out_peak = float(np.max(np.abs(out)))
        return (out * (peak / out_peak)).astype(np.float32) if out_peak > 0 else out.astype(np.float32)

    def __call__(self, clip: np.ndarray, rng: np.random.Generator, prob: float | None = None) -> np.ndarray:
        """The chain with probability ``prob`` (default ``config.p_effects``), else ``clip`` unchanged."""
        prob = self.config.p_effects if prob is None else prob
        on = rng.random() < prob
        draw = self.draw(rng)
        return self.apply(clip, draw) if on else clip

    def batch(self, waves: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
        """Rows of ``waves`` (clips, samples), each through the chain with probability ``prob``.

        The draws are made in row order before the rows are spread over the thread pool.
        """
        on = rng.random(len(waves)) < prob
        draws = [self.draw(rng) for _ in range(len(waves))]
        rows = np.flatnonzero(on)
        out = np.array(waves, np.float32, copy=True)
        if self.threads and len(rows) > 1:
            results = _pool(self.workers).map(lambda i: self.apply(waves[i], draws[i]), rows)
        else:
            results = (self.apply(waves[i], draws[i]) for i in rows)
        for i, clip in zip(rows, results):
            out[i] = clip
        return out
