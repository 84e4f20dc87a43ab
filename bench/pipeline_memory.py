"""Benchmark: peak memory while training does not grow with the number of cached clips.

Builds two waveform caches of synthetic clips (default 1,000 and 20,000), then, each in a fresh
process, trains a small cnn9 for the same number of steps on training batches (random crops +
global features + mixup) from the tf.data pipeline and records the peak resident memory.
Goal: growth < 10 %. ``--pipeline-only`` streams the batches without a model. ``--loader`` picks the
training input: "python" (numpy crops from the HDF5 file), "records" (the in-graph loader streaming
TFRecord shards: flat too) or "memory" (the in-graph loader holding the samples in memory, so it grows
by the cache's size by design, up to ``pipeline.graph_memory_fraction`` of the memory).

Usage: python bench/pipeline_memory.py [--small 1000] [--large 20000] [--batches 300] [--loader records] [--json OUT]
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
from synthetic import synthetic_cache

REPO = Path(__file__).resolve().parents[1]
SR = 16000


def small_cnn9(crop_seconds: float):
    import keras

    from freesound_tf.config import FrontendConfig, ModelConfig
    from freesound_tf.models import build_cnn9

    config = ModelConfig(variant="se", stem_width=8, block_widths=(8, 16, 16, 16), gru_units=8)
    model = build_cnn9(config, FrontendConfig(n_fft=256, hop_length=128), 10, SR, crop_seconds)
    model.compile(optimizer=keras.optimizers.Nadam(1e-3), loss="binary_crossentropy")
    return model


def stream(cache_path: str, batches: int, train_model: bool, loader: str) -> dict:
    """Runs in a fresh process: train on (or only stream) ``batches`` batches, report peak RSS."""
    from freesound_tf.config import PipelineConfig
    from freesound_tf.data.cache import WaveformCache
    from freesound_tf.data.graph_pipeline import GraphTrainInput
    from freesound_tf.data.pipeline import EpochPlan, TrainInput

    cache = WaveformCache(cache_path)
    labels = np.eye(10, dtype=np.float32)[np.arange(len(cache)) % 10]
    config = PipelineConfig(crop_seconds=0.5, batch_size=32)
    if loader == "python":
        ds = TrainInput(cache, labels, config, SR, mixup_prob=0.5).dataset().repeat()
    else:  # continuous, as fit_stage runs it
        train = GraphTrainInput(cache, labels, config, SR, source=loader)
        ds = train.dataset(epochs=EpochPlan(0, (0.5,)))
    model = small_cnn9(0.5) if train_model else None
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if model is not None:
        model.fit(ds, steps_per_epoch=batches, epochs=1, verbose=0)
    else:
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
    parser.add_argument("--pipeline-only", action="store_true", help="stream batches without training a model")
    parser.add_argument("--loader", choices=("python", "records", "memory"), default="python")
    parser.add_argument("--stream", help=argparse.SUPPRESS)  # internal: child process mode
    args = parser.parse_args()
    if args.stream:
        print(json.dumps(stream(args.stream, args.batches, not args.pipeline_only, args.loader)))
        return
    work = Path(args.work)
    results = []
    for n in (args.small, args.large):
        cache = synthetic_cache(work, f"mem{n}", n, (args.seconds, args.seconds), SR, seed=n, workers=None)
        child = [sys.executable, __file__, "--stream", str(cache), "--batches", str(args.batches),
                 "--loader", args.loader]
        out = subprocess.run(child + (["--pipeline-only"] if args.pipeline_only else []),
                             check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    small, large = results
    growth = large["peak_rss_mb"] / small["peak_rss_mb"] - 1
    print(f"{'clips':>8s} {'batches':>8s} {'peak RSS MB':>12s} {'batches/s':>10s}")
    for row in results:
        print(f"{row['clips']:8d} {row['batches']:8d} {row['peak_rss_mb']:12.1f} {row['batches'] / row['seconds']:10.1f}")
    what = f"{args.loader} loader, " + ("streaming batches" if args.pipeline_only else "training a small cnn9")
    print(f"peak RSS growth {args.small} -> {args.large} clips, {what}: {100 * growth:+.1f} % (goal < 10 %)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"runs": results, "growth": growth, "training": not args.pipeline_only,
                                           "loader": args.loader},
                                          indent=1))


if __name__ == "__main__":
    main()
