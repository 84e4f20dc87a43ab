"""Benchmark: peak memory while streaming training batches does not grow with the number of clips.

Builds two waveform caches of synthetic clips (default 1,000 and 20,000), then, each in a fresh
process, streams the same number of training batches (random crops + global features + mixup)
through the tf.data pipeline and records the peak resident memory. Goal: growth < 10 %.

Usage: python bench/pipeline_memory.py [--small 1000] [--large 20000] [--batches 300] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SR = 16000


class Folder:
    """A cacheable split: every WAV of a folder."""

    def __init__(self, name: str, root: Path, n: int) -> None:
        self.name, self.root = name, root
        self.fnames = [f"c{k:06d}.wav" for k in range(n)]

    def paths(self) -> list[Path]:
        return [self.root / f for f in self.fnames]


def build(work: Path, n: int, seconds: float) -> Path:
    from freesound_tf.config import AudioConfig
    from freesound_tf.data.cache import build_cache

    folder = work / f"clips{n}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    length = int(seconds * SR)
    for k in range(n):
        path = folder / f"c{k:06d}.wav"
        if not path.exists():
            sf.write(path, (0.1 * rng.normal(size=length)).astype(np.float32), SR, subtype="PCM_16")
    return build_cache(Folder(f"mem{n}", folder, n), AudioConfig(sample_rate=SR, trim_top_db=0.0), work / "cache")


def stream(cache_path: str, batches: int) -> dict:
    """Runs in a fresh process: stream ``batches`` batches, report peak RSS."""
    from freesound_tf.config import PipelineConfig
    from freesound_tf.data.cache import WaveformCache
    from freesound_tf.data.pipeline import TrainInput

    cache = WaveformCache(cache_path)
    labels = np.eye(10, dtype=np.float32)[np.arange(len(cache)) % 10]
    train = TrainInput(cache, labels, PipelineConfig(crop_seconds=0.5, batch_size=32), SR, mixup_prob=0.5)
    ds = train.dataset().repeat()
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for _ in ds.take(batches):
        pass
    return {"clips": len(cache), "batches": batches, "seconds": time.perf_counter() - start,
            "rss_after_setup_mb": start_rss / 1024,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=0.6, help="clip length (default 0.6 s)")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--work", default=str(REPO / "work" / "bench-memory"))
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "pipeline_memory.json"))
    parser.add_argument("--stream", help=argparse.SUPPRESS)  # internal: child process mode
    args = parser.parse_args()
    if args.stream:
        print(json.dumps(stream(args.stream, args.batches)))
        return
    work = Path(args.work)
    results = []
    for n in (args.small, args.large):
        cache = build(work, n, args.seconds)
        out = subprocess.run([sys.executable, __file__, "--stream", str(cache), "--batches", str(args.batches)],
                             check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    small, large = results
    growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
    print(f"{'clips':>8s} {'batches':>8s} {'peak RSS MB':>12s} {'batches/s':>10s}")
    for row in results:
        print(f"{row['clips']:8d} {row['batches']:8d} {row['peak_rss_mb']:12.1f} {row['batches'] / row['seconds']:10.1f}")
    print(f"peak RSS growth {args.small} -> {args.large} clips: {100 * growth:+.1f} % (goal < 10 %)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"runs": results, "growth": growth}, indent=1))


if __name__ == "__main__":
    main()
