"""Decode audio files into float32 mono waveforms at a fixed sample rate."""
from __future__ import annotations

from pathlib import Path

import audioread
# librosa loads submodules lazily (seconds on first use); import what trim uses up front so
# cache workers forked from a preloaded server start warm.
import librosa.effects
import librosa.feature.spectral
import numpy as np
import soundfile as sf
import soxr


class AudioDecodeError(Exception):
    """A clip could not be turned into a usable waveform; ``str(e)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode ``path`` to a float32 mono waveform in [-1, 1] resampled to ``sample_rate``.

    soundfile reads WAV (8/16/24/32-bit PCM, float), FLAC, OGG and MP3; audioread is the
    fallback for anything else. Channels are averaged. Raises :class:`AudioDecodeError` for
    unreadable, empty or non-finite audio; an all-silent clip is returned as it is (a test clip
    that is silent still needs a score).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "file not found")
    data, native_rate = _decode(path)
    if data.size == 0:
        raise AudioDecodeError(path, "empty")
    y = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(y)):
        raise AudioDecodeError(path, "contains NaN or inf samples")
    if native_rate != sample_rate:
        y = soxr.resample(y, native_rate, sample_rate, quality="HQ")
    # Float files may exceed full scale and resampling can overshoot slightly.
    return np.clip(y, -1.0, 1.0).astype(np.float32, copy=False)


def trim_silence(y: np.ndarray, top_db: float) -> tuple[np.ndarray, int, int]:
    """Cut leading/trailing parts quieter than ``top_db`` below the peak (librosa.effects.trim).

    Returns ``(trimmed, start, end)`` with ``trimmed == y[start:end]``; ``top_db <= 0`` keeps
    the whole clip.
    """
    if top_db <= 0:
        return y, 0, len(y)
    trimmed, (start, end) = librosa.effects.trim(y, top_db=top_db)
    return trimmed, int(start), int(end)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 samples and the native rate; tries soundfile, then audioread."""
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        return data, int(rate)
    except (sf.LibsndfileError, RuntimeError, ValueError) as sf_err:
        sf_reason = str(sf_err)
    try:
        with audioread.audio_open(str(path)) as stream:
            rate, channels = int(stream.samplerate), int(stream.channels)
            pcm = b"".join(stream)  # audioread always yields 16-bit signed little-endian PCM
    except Exception as ar_err:  # audioread backends raise assorted types
        ar_reason = f"{type(ar_err).__name__}: {ar_err}" if str(ar_err) else type(ar_err).__name__
        raise AudioDecodeError(path, f"cannot decode (soundfile: {sf_reason}; audioread: {ar_reason})") from None
    data = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return data.reshape(-1, max(channels, 1)), rate
