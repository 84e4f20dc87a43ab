"""Benchmark: TrainInput throughput (clips/s, no model) with seed 000's audio effects off and on.

Builds a waveform cache of synthetic clips (tones plus noise bursts), then streams training
batches through the tf.data pipeline (num_parallel_calls=AUTOTUNE) three ways: effects off,
effects on (p_effects 0.75, the default per-effect probabilities), and effects on with the
per-batch thread pool disabled, so the table shows what the pool adds on top of tf.data's own
parallel map calls. Also times the CPU of each effect alone on one crop. Prints a table and the load
average (shared machines skew the figures), writes bench/results/effects_throughput.json.

Usage: python bench/effects_throughput.py [--clips 160] [--batches 10] [--sample-rate 44100] [--crop 5]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from synthetic import synthetic_cache, tones_and_bursts

REPO = Path(__file__).resolve().parents[1]


def stream(train, batches: int) -> dict[str, float]:
    """Clips per second over ``batches`` batches after two warm-up batches, and the CPU they took.

    On a shared machine wall-clock throughput follows the load; CPU seconds per clip do not, and
    CPU / wall shows how many cores the pipeline kept busy (above 1: the work ran outside the GIL).
    """
    ds = train.dataset().repeat()
    it = iter(ds)
    for _ in range(2):
        next(it)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(it)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    clips = batches * train.config.batch_size
    return {"clips_per_s": clips / wall, "cpu_ms_per_clip": 1000 * cpu / clips, "cores_busy": cpu / wall}


def per_effect_ms(sr: int, crop_len: int) -> dict[str, float]:
    from freesound_tf.augmentation import effects as fx

    clip = tones_and_bursts(np.random.default_rng(0), crop_len, sr)
    cases = {
        "pitch +2 st": lambda: fx.pitch_tempo(clip, sr, 2.0, 1.0),
        "tempo x1.15": lambda: fx.pitch_tempo(clip, sr, 0.0, 1.15),
        "pitch +2 st & tempo x1.15": lambda: fx.pitch_tempo(clip, sr, 2.0, 1.15),
        "overdrive 10 dB": lambda: fx.overdrive(clip, 10.0),
        "reverb room 0.5": lambda: fx.reverb(clip, sr, 0.5, 0.3),
    }
    out = {}
    for name, run in cases.items():
        run()
        start = time.thread_time()  # CPU of this thread, where the C++ runs: independent of the load
        for _ in range(3):
            run()
        out[name] = 1000 * (time.thread_time() - start) / 3
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=160)
    parser.add_argument("--seconds", type=float, default=6.0, help="clip length (default 6 s)")
    parser.add_argument("--crop", type=float, default=5.0, help="training crop in seconds (default 5)")
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--p-effects", type=float, default=0.75)
    parser.add_argument("--work", default=str(REPO / "work" / "bench-effects"))
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "effects_throughput.json"))
    args = parser.parse_args()

    from freesound_tf.config import AugmentConfig, PipelineConfig
    from freesound_tf.data.cache import WaveformCache
    from freesound_tf.data.pipeline import TrainInput

    sr = args.sample_rate
    cache = WaveformCache(synthetic_cache(Path(args.work), f"fx{args.clips}_{sr}", args.clips,
                                          (args.seconds, args.seconds), sr, tones_and_bursts, seed=args.clips,
                                          workers=None))
    labels = np.eye(10, dtype=np.float32)[np.arange(len(cache)) % 10]
    pipeline = PipelineConfig(crop_seconds=args.crop, batch_size=args.batch_size)
    load_before = os.getloadavg()
    rows = []
    for name, p_effects, threads in (("effects off", 0.0, True), (f"effects on p={args.p_effects}", args.p_effects, True),
                                     (f"effects on p={args.p_effects}, no pool", args.p_effects, False)):
        train = TrainInput(cache, labels, pipeline, sr, mixup_prob=0.5, augment=AugmentConfig(p_effects=p_effects))
        train.effects.threads = threads
        rows.append({"run": name, "p_effects": p_effects, "thread_pool": threads, **stream(train, args.batches),
                     "loadavg_1min_after": os.getloadavg()[0]})
    effect_ms = per_effect_ms(sr, int(round(args.crop * sr)))
    cache.close()

    print(f"TrainInput, {args.crop:g} s crops at {sr} Hz, batch {args.batch_size}, {args.batches} batches, "
          f"num_parallel_calls=AUTOTUNE, {os.cpu_count()} CPUs, load before {load_before[0]:.2f}")
    print(f"{'run':38s} {'clips/s':>9s} {'vs off':>7s} {'CPU ms/clip':>12s} {'cores busy':>11s} {'load 1 min':>11s}")
    for row in rows:
        print(f"{row['run']:38s} {row['clips_per_s']:9.1f} {row['clips_per_s'] / rows[0]['clips_per_s']:7.2f} "
              f"{row['cpu_ms_per_clip']:12.1f} {row['cores_busy']:11.2f} {row['loadavg_1min_after']:11.2f}")
    print("CPU per effect on one crop:", ", ".join(f"{k} {v:.1f} ms" for k, v in effect_ms.items()))
    result = {"sample_rate": sr, "crop_seconds": args.crop, "batch_size": args.batch_size, "batches": args.batches,
              "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "runs": rows, "per_effect_cpu_ms": effect_ms}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
