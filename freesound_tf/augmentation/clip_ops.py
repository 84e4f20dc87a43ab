"""Per-clip waveform augmentations of seeds 000 and 003, applied to a clip's training audio before padding."""
from __future__ import annotations

import librosa
import numpy as np


def shuffle_chunks(clip: np.ndarray, chunk_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Seed 000's chunk shuffle: cut ``clip`` into ``len // chunk_samples`` nearly equal chunks (the first
    ``len % n`` one sample longer) and put them back in random order; fewer than two chunks: unchanged."""
    n_chunks = len(clip) // chunk_samples
    if n_chunks < 2:
        return clip
    chunks = np.array_split(clip, n_chunks)
    return np.concatenate([chunks[k] for k in rng.permutation(n_chunks)])


def masked_copy(clip: np.ndarray, sample_rate: int, rng: np.random.Generator, time_fraction: float,
                freq_fraction: float) -> np.ndarray:
    """Seed 003's trick for short clips: ``clip`` followed by a copy with one time mask and one frequency mask.

    Done on the waveform, so the in-graph frontend sees it as any other audio: the time mask zeroes a
    span of up to ``time_fraction`` of the copy; the frequency mask removes (FFT band-stop over the whole
    copy) a band covering up to ``freq_fraction`` of the mel scale between 0 Hz and Nyquist. Both widths
    and positions are uniform.
    """
    n = len(clip)
    top_mel = librosa.hz_to_mel(sample_rate / 2)
    band = rng.uniform(0.0, freq_fraction) * top_mel
    low_mel = rng.uniform(0.0, top_mel - band)
    low_hz, high_hz = librosa.mel_to_hz(np.array([low_mel, low_mel + band]))
    spectrum = np.fft.rfft(clip)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spectrum[(freqs >= low_hz) & (freqs <= high_hz)] = 0.0
    copy = np.fft.irfft(spectrum, n).astype(np.float32)
    width = int(rng.integers(0, int(time_fraction * n) + 1))
    start = int(rng.integers(0, n - width + 1))
    copy[start:start + width] = 0.0  # after the band-stop, so the span stays silent
    return np.concatenate([np.asarray(clip, np.float32), copy])
