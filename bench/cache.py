"""Benchmark: building the waveform cache in parallel vs decoding serially with librosa.

Times, in one run over the same files:
  librosa.load      serial ``librosa.load(path, sr=sr)`` (decode + resample only)
  seed-style serial serial librosa.load + librosa.effects.trim + per-window loop of the 128x12
                    global features: the preprocessing the cache replaces
  cache, 1 worker   ``build_cache(workers=1)``: same work as the parallel build, in-process
  cache, N cold     ``build_cache(workers=N)`` in a fresh process: includes starting the
                    forkserver, which imports the decoders once (seconds)
  cache, N warm     the same again into another file: workers fork from the warm server,
                    as for every split after the first in one CLI run

Usage: python bench/cache.py --n-clips 200 --seconds 4 --sr 44100 --json out.json
       python bench/cache.py --shared   # UrbanSound8K subset FLACs (16 kHz) from ../shared
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from freesound_tf.config import AudioConfig
from freesound_tf.data.cache import build_cache

SHARED_SUBSET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "urbansound8k-subset"


@dataclass
class FileTable:
    name: str
    files: list[Path]

    @property
    def fnames(self) -> list[str]:
        return [f.name for f in self.files]

    def paths(self) -> list[Path]:
        return self.files


def synthesize(folder: Path, n_clips: int, seconds: float, sr: int) -> list[Path]:
    """16-bit WAVs: a tone plus noise, with 0.1 s of silence at both ends."""
    rng = np.random.default_rng(0)
    files = []
    for k in range(n_clips):
        n = int(seconds * sr)
        t = np.arange(n) / sr
        y = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + rng.normal(0, 0.05, n)
        y[: sr // 10] = 0.0
        y[-sr // 10:] = 0.0
        path = folder / f"clip{k:05d}.wav"
        sf.write(path, np.clip(y, -1, 1).astype(np.float32), sr, subtype="PCM_16")
        files.append(path)
    return files


def seed_style_features(x: np.ndarray, steps: int = 128) -> np.ndarray:
    """The per-window Python loop the vectorized ``global_features`` replaces (for timing only)."""
    stride = len(x) / steps
    rows = []
    for s in range(steps):
        i = s * stride
        w = x[max(0, int(i - stride / 2)):int(i + 1.5 * stride)]
        rows.append([w.mean(), w.std(), w.max() - w.min(),
                     *np.percentile(w, [0, 1, 25, 30, 50, 60, 75, 99, 100])])
    return np.array(rows)


def timed(label: str, fn, n: int, timings: dict) -> None:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    timings[label] = {"seconds": round(seconds, 3), "clips_per_s": round(n / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--sr", type=int, default=44100, help="target (and synthetic file) sample rate")
    parser.add_argument("--workers", type=int, default=None, help="default: all usable cores")
    parser.add_argument("--shared", action="store_true", help="use the UrbanSound8K subset's FLACs (see --data)")
    parser.add_argument("--data", type=Path, default=SHARED_SUBSET, help="the subset's folder with --shared")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    workers = args.workers or len(os.sched_getaffinity(0))
    audio = AudioConfig(sample_rate=args.sr)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.shared:
            if not args.data.is_dir():
                parser.error(f"{args.data} not found; pass --data or run without --shared")
            files = sorted(args.data.glob("audio/**/*.flac"))[: args.n_clips]
            source = f"{len(files)} UrbanSound8K FLACs (16 kHz mono, 4 s) -> {args.sr} Hz"
        else:
            files = synthesize(tmp, args.n_clips, args.seconds, args.sr)
            source = f"{len(files)} synthetic {args.seconds:g} s 16-bit WAVs at {args.sr} Hz"
        n = len(files)
        table = FileTable("bench", files)
        librosa.load(files[0], sr=args.sr)  # warm imports and caches outside the timings
        seed_style_features(librosa.effects.trim(librosa.load(files[0], sr=args.sr)[0], top_db=60)[0])

        def seed_style() -> None:
            for f in files:
                y, _ = librosa.load(f, sr=args.sr)
                librosa.effects.trim(y, top_db=60)
                seed_style_features(y)

        timings: dict = {}
        load_before = os.getloadavg()
        timed("librosa.load serial", lambda: [librosa.load(f, sr=args.sr) for f in files], n, timings)
        timed("seed-style serial", seed_style, n, timings)
        timed("cache, 1 worker", lambda: build_cache(table, audio, tmp / "c1", workers=1, progress=False), n,
              timings)
        for run in ("cold", "warm"):
            timed(f"cache, {workers} {run}", lambda: build_cache(
                table, audio, tmp / run, workers=workers, progress=False), n, timings)
        load_after = os.getloadavg()

    parallel = timings[f"cache, {workers} warm"]["clips_per_s"]
    print(f"{source}; {workers} workers; load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
    print(f"{'method':<22}{'seconds':>10}{'clips/s':>10}{'cache/x':>10}")
    for label, row in timings.items():
        print(f"{label:<22}{row['seconds']:>10.2f}{row['clips_per_s']:>10.1f}{parallel / row['clips_per_s']:>9.2f}x")
    if args.json:
        report = {"source": source, "workers": workers, "cpu_count": os.cpu_count(),
                  "loadavg_before": load_before, "loadavg_after": load_after, "timings": timings,
                  "speedup_vs": {k: round(parallel / v["clips_per_s"], 2) for k, v in timings.items()}}
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
