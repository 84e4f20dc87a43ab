"""Synthetic FAT2019-layout data set for demos, smoke runs and tests.

Ten procedurally synthesised sound classes, each drawn with fresh random parameters per
clip (pitch, rate, sweep range, band...). Events start at a random time, last a random
share of a 1-4 s clip, play at a random level over pink background noise at a random
SNR, so loudness says nothing about the class but the log-mel pattern does. A share of
clips mixes two overlapping classes (two labels), and the noisy split gets a share of
corrupted label sets, as in the competition.

The whole set derives from one seed: the plan (who gets which labels) from one stream,
each clip's audio from its own stream, so the files are byte-identical across runs.
"""
from __future__ import annotations

import csv
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
from scipy import fft, signal

# Bump when the synthesis changes so cached demo sets are rebuilt.
GENERATOR_VERSION = 1
MANIFEST = "demo_manifest.json"
MIN_SECONDS, MAX_SECONDS = 1.0, 4.0

DEMO_CLASSES: tuple[str, ...] = (
    "Band_noise",
    "Beep_train",
    "Chirp_down",
    "Chirp_up",
    "Click_train",
    "Harmonic_tone",
    "Kick_drum",
    "Noise_burst",
    "Siren_warble",
    "Tremolo_tone",
)

# (split folder, CSV with training labels or None for test, file prefix)
_SPLITS = {
    "curated": ("train_curated", "train_curated.csv", "cur"),
    "noisy": ("train_noisy", "train_noisy.csv", "noi"),
    "test": ("test", None, "tst"),
}


@dataclass(frozen=True)
class _DemoParams:
    seed: int
    sample_rate: int
    n_curated: int
    n_noisy: int
    n_test: int
    noisy_label_corruption: float
    pair_fraction: float
    generator_version: int = GENERATOR_VERSION


@dataclass(frozen=True)
class _Clip:
    fname: str
    classes: tuple[int, ...]  # true classes, in the order they are rendered
    written: tuple[int, ...]  # classes written to the CSV (differs from ``classes`` if corrupted)


def make_demo_dataset(
    out_dir: str | Path,
    seed: int = 0,
    sample_rate: int = 16000,
    n_curated: int = 240,
    n_noisy: int = 360,
    n_test: int = 120,
    noisy_label_corruption: float = 0.3,
    pair_fraction: float = 0.3,
) -> Path:
    """Write the demo set in the Kaggle FAT2019 layout under ``out_dir`` and return it.

    Produces ``train_curated.csv`` + ``train_curated/``, ``train_noisy.csv`` +
    ``train_noisy/``, ``test/`` + ``sample_submission.csv`` (zeros, columns
    ``DEMO_CLASSES``) and ``test_truth.csv``, as 16-bit PCM WAV. A folder that already
    holds a complete set built with the same parameters is returned untouched; one
    holding anything other than a demo set is refused rather than overwritten.
    """
    params = _DemoParams(seed, sample_rate, n_curated, n_noisy, n_test,
                         noisy_label_corruption, pair_fraction)
    _check_params(params)
    out = Path(out_dir)
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:  # torn write: ours, but incomplete
            manifest = {}
        if manifest.get("complete") and manifest.get("params") == asdict(params):
            return out
    elif out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: not empty and not a demo set (no {MANIFEST}); "
                              "choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    # Mark the folder as ours before writing, so an interrupted build is rebuilt next time.
    _write_manifest(manifest_path, params, complete=False)
    for folder, _, _ in _SPLITS.values():
        shutil.rmtree(out / folder, ignore_errors=True)
        (out / folder).mkdir()

    plan = _plan(params)
    for split, clips in plan.items():
        folder, _, _ = _SPLITS[split]
        for number, clip in enumerate(clips):
            rng = np.random.default_rng([params.seed, list(_SPLITS).index(split), number])
            audio = _render(rng, clip.classes, sample_rate)
            sf.write(out / folder / clip.fname, audio, sample_rate, subtype="PCM_16")
    _write_csvs(out, plan)
    _write_manifest(manifest_path, params, complete=True)
    return out


def _check_params(p: _DemoParams) -> None:
    if p.seed < 0:
        raise ValueError(f"demo: seed={p.seed}; use a non-negative integer")
    if p.sample_rate < 8000:
        raise ValueError(f"demo: sample_rate={p.sample_rate}; use at least 8000 Hz")
    for name in ("n_curated", "n_noisy", "n_test"):
        if getattr(p, name) < 1:
            raise ValueError(f"demo: {name}={getattr(p, name)}; use at least 1")
    for name in ("noisy_label_corruption", "pair_fraction"):
        if not 0.0 <= getattr(p, name) <= 1.0:
            raise ValueError(f"demo: {name}={getattr(p, name)}; use a value in [0, 1]")


def _plan(p: _DemoParams) -> dict[str, list[_Clip]]:
    """True and written labels of every clip; exact shares of pairs and corrupted sets."""
    rng = np.random.default_rng(p.seed)
    n_classes = len(DEMO_CLASSES)
    plan = {}
    for split, n in (("curated", p.n_curated), ("noisy", p.n_noisy), ("test", p.n_test)):
        # Balanced primary classes, shuffled; exactly round(n * share) pairs.
        primary = rng.permutation(np.resize(np.arange(n_classes), n))
        paired = _chosen(rng, n, p.pair_fraction)
        offset = rng.integers(1, n_classes, size=n)  # second class != primary
        corrupted = _chosen(rng, n, p.noisy_label_corruption) if split == "noisy" else np.zeros(n, bool)
        clips = []
        for i in range(n):
            classes = (int(primary[i]),)
            if paired[i]:
                classes += (int((primary[i] + offset[i]) % n_classes),)
            written = _corrupt(rng, classes, n_classes) if corrupted[i] else classes
            clips.append(_Clip(f"{_SPLITS[split][2]}{i:05d}.wav", classes, written))
        plan[split] = clips
    return plan


def _chosen(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[rng.permutation(n)[: int(round(n * share))]] = True
    return mask


def _corrupt(rng: np.random.Generator, classes: tuple[int, ...], n_classes: int) -> tuple[int, ...]:
    """Swap one label for a wrong one, add a wrong one, or both; always changes the set."""
    labels = list(classes)
    mode = rng.choice(["swap", "add", "both"], p=[0.5, 0.25, 0.25])
    if mode in ("swap", "both"):
        wrong = [c for c in range(n_classes) if c not in labels]
        labels[rng.integers(len(labels))] = int(rng.choice(wrong))
    if mode in ("add", "both"):
        wrong = [c for c in range(n_classes) if c not in labels]
        labels.append(int(rng.choice(wrong)))
    return tuple(labels)


def _write_csvs(out: Path, plan: dict[str, list[_Clip]]) -> None:
    def label_cell(classes: tuple[int, ...]) -> str:
        return ",".join(DEMO_CLASSES[c] for c in sorted(classes))

    for split, clips in plan.items():
        _, csv_name, _ = _SPLITS[split]
        rows = [(c.fname, label_cell(c.written)) for c in clips]
        _write_rows(out / (csv_name or "test_truth.csv"), ["fname", "labels"], rows)
    zeros = [0] * len(DEMO_CLASSES)
    _write_rows(out / "sample_submission.csv", ["fname", *DEMO_CLASSES],
                [(c.fname, *zeros) for c in plan["test"]])


def _write_rows(path: Path, header: list[str], rows: list[tuple]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_manifest(path: Path, params: _DemoParams, complete: bool) -> None:
    path.write_text(json.dumps({"params": asdict(params), "complete": complete}, indent=2) + "\n")


# ---------------------------------------------------------------------------------------
# Synthesis. Every generator returns ``n`` samples with unit RMS; level is applied later.


def _render(rng: np.random.Generator, classes: tuple[int, ...], sr: int) -> np.ndarray:
    """One clip: the events of ``classes`` (overlapping in time) over pink background noise."""
    n = int(rng.uniform(MIN_SECONDS, MAX_SECONDS) * sr)
    clip = np.zeros(n)
    first_rms = 10 ** (rng.uniform(-32.0, -14.0) / 20)
    first_start = first_end = 0
    loudest = 0.0
    for k, cls in enumerate(classes):
        length = int(rng.uniform(0.4, 1.0) * n)
        if k == 0:
            start = int(rng.integers(0, n - length + 1))
            first_start, first_end = start, start + length
            rms = first_rms
        else:
            # Start or end inside the first event so the two really overlap, within 6 dB
            # of its level so neither drowns in the background.
            lo = max(0, first_start - length + 1)
            hi = min(n - length, first_end - 1)
            start = int(rng.integers(lo, hi + 1))
            rms = first_rms * 10 ** (rng.uniform(-6.0, 6.0) / 20)
        event = _GENERATORS[DEMO_CLASSES[cls]](rng, length, sr) * _fade(length, sr)
        clip[start:start + length] += rms * event
        loudest = max(loudest, rms)
    snr_db = rng.uniform(6.0, 30.0)
    clip += loudest * 10 ** (-snr_db / 20) * _pink_noise(rng, n)
    peak = np.abs(clip).max()
    if peak > 0.99:
        clip *= 0.99 / peak
    return clip.astype(np.float32)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def _fade(n: int, sr: int, seconds: float = 0.01) -> np.ndarray:
    """Raised-cosine edges so events do not start or end with a click."""
    k = max(1, min(int(seconds * sr), n // 2))
    env = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
    env[:k] = ramp
    env[n - k:] = ramp[::-1]
    return env


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _top(sr: int, hz: float) -> float:
    """Cap a frequency below Nyquist so low sample rates stay alias-free."""
    return min(hz, 0.45 * sr)


def _sine_from_freq(freq: np.ndarray, sr: int, phase: float = 0.0) -> np.ndarray:
    return np.sin(phase + 2 * np.pi * np.cumsum(freq) / sr)


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """1/f-power noise by spectral shaping; the FFT runs at a fast length and is cut to n."""
    size = fft.next_fast_len(n, real=True)
    spectrum = fft.rfft(rng.standard_normal(size))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    spectrum[0] = 0
    return _unit_rms(fft.irfft(spectrum, size)[:n])


def _pulses(rng: np.random.Generator, n: int, sr: int, rate_hz: float, jitter: float) -> np.ndarray:
    """Sample positions of a roughly periodic pulse train starting near 0."""
    period = sr / rate_hz
    count = max(1, int(n / period))
    times = np.arange(count) * period + rng.uniform(-jitter, jitter, count) * period
    return np.clip(times + rng.uniform(0, 0.3) * period, 0, n - 1).astype(np.int64)


def _harmonic_tone(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    f0 = _log_uniform(rng, 110, 500)
    t = np.arange(n) / sr
    vibrato = 1 + 0.006 * np.sin(2 * np.pi * rng.uniform(4, 6) * t)
    rolloff = rng.uniform(0.45, 0.8)
    out = np.zeros(n)
    for k in range(1, int(rng.integers(3, 9)) + 1):
        if k * f0 < _top(sr, 7000):
            out += rolloff ** (k - 1) * _sine_from_freq(k * f0 * vibrato, sr, rng.uniform(0, 2 * np.pi))
    return _unit_rms(out)


def _chirp(rng: np.random.Generator, n: int, sr: int, upward: bool) -> np.ndarray:
    low, high = _log_uniform(rng, 150, 600), _log_uniform(rng, 1500, _top(sr, 6000))
    t = np.arange(n) / sr
    f_start, f_end = (low, high) if upward else (high, low)
    method = "logarithmic" if rng.random() < 0.5 else "linear"
    tone = signal.chirp(t, f0=f_start, t1=t[-1] if n > 1 else 1.0, f1=f_end, method=method)
    return _unit_rms(tone)


def _chirp_up(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    return _chirp(rng, n, sr, upward=True)


def _chirp_down(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    return _chirp(rng, n, sr, upward=False)


def _noise_burst(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A few broadband bursts, each a sharp attack with an exponential decay."""
    envelope = np.zeros(n)
    tau = rng.uniform(0.03, 0.12) * sr
    decay = np.exp(-np.arange(int(6 * tau)) / tau)
    for start in _pulses(rng, n, sr, rate_hz=rng.uniform(1.5, 4.0), jitter=0.2):
        piece = decay[: n - start]
        envelope[start:start + piece.size] = np.maximum(envelope[start:start + piece.size], piece)
    return _unit_rms(rng.standard_normal(n) * envelope)


def _click_train(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Short decaying clicks at 5-30 per second."""
    impulses = np.zeros(n)
    impulses[_pulses(rng, n, sr, rate_hz=rng.uniform(5, 30), jitter=0.05)] = 1.0
    kernel_len = max(2, int(0.004 * sr))
    kernel = rng.standard_normal(kernel_len) * np.exp(-np.arange(kernel_len) / (0.0008 * sr))
    return _unit_rms(signal.fftconvolve(impulses, kernel)[:n])


def _tremolo_tone(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    carrier = np.sin(2 * np.pi * _log_uniform(rng, 300, 1500) * t + rng.uniform(0, 2 * np.pi))
    depth = rng.uniform(0.7, 1.0)
    modulator = 1 - depth * 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(4, 12) * t))
    return _unit_rms(carrier * modulator)


def _siren_warble(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    centre = _log_uniform(rng, 500, _top(sr, 1500))
    deviation = rng.uniform(0.15, 0.35) * centre
    freq = centre + deviation * np.sin(2 * np.pi * rng.uniform(1, 6) * t + rng.uniform(0, 2 * np.pi))
    return _unit_rms(_sine_from_freq(freq, sr))


def _band_noise(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    centre = _log_uniform(rng, 700, _top(sr, 5000))
    half_width = 2 ** (rng.uniform(0.15, 0.4) / 2)  # 0.15-0.4 octave band
    sos = signal.butter(2, [centre / half_width, min(centre * half_width, 0.49 * sr)],
                        btype="bandpass", fs=sr, output="sos")
    return _unit_rms(signal.sosfilt(sos, rng.standard_normal(n)))


def _kick_drum(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Repeated low thumps: a sine whose pitch falls quickly, with an exponential decay."""
    hit_len = int(0.25 * sr)
    t = np.arange(hit_len) / sr
    f_high, f_low = rng.uniform(120, 200), rng.uniform(40, 70)
    freq = f_low + (f_high - f_low) * np.exp(-t / 0.03)
    hit = _sine_from_freq(freq, sr) * np.exp(-t / rng.uniform(0.06, 0.12))
    impulses = np.zeros(n)
    impulses[_pulses(rng, n, sr, rate_hz=rng.uniform(1.5, 5.0), jitter=0.05)] = 1.0
    return _unit_rms(signal.fftconvolve(impulses, hit)[:n])


def _beep_train(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A pure high tone gated on and off (square gate with softened edges)."""
    t = np.arange(n) / sr
    tone = np.sin(2 * np.pi * _log_uniform(rng, 1000, _top(sr, 3000)) * t)
    on, off = rng.uniform(0.05, 0.2), rng.uniform(0.05, 0.2)
    gate = ((t + rng.uniform(0, on + off)) % (on + off)) < on
    smooth = np.hanning(max(3, int(0.005 * sr)))
    gate = np.convolve(gate.astype(float), smooth / smooth.sum(), mode="same")
    return _unit_rms(tone * gate)


_GENERATORS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "Band_noise": _band_noise,
    "Beep_train": _beep_train,
    "Chirp_down": _chirp_down,
    "Chirp_up": _chirp_up,
    "Click_train": _click_train,
    "Harmonic_tone": _harmonic_tone,
    "Kick_drum": _kick_drum,
    "Noise_burst": _noise_burst,
    "Siren_warble": _siren_warble,
    "Tremolo_tone": _tremolo_tone,
}
