"""Benchmark: training throughput from the HDF5 cache pipeline vs from in-memory batches.

One run, one model (a cnn9 sized by the options), three measurements:
  pipeline alone   batches/s of ``TrainInput.dataset()`` (random crops, global features, length,
                   mixup, prefetch) with no model: the headroom the pipeline has
  fit, pipeline    ``model.fit`` on that dataset for ``--steps`` steps
  fit, in memory   ``model.fit`` for the same number of steps on batches taken from the same
                   pipeline beforehand and held as tensors (``from_tensor_slices(...).repeat()``)
Each round runs both fits back to back (in alternating order), so a burst of load from other jobs
mostly hits both fits of a round. The goal is on the median over rounds of the round's ratio of
clips/s, fit from the pipeline / fit from memory (each from the start of ``fit`` to its last step,
so including the iterator start and prefetch fill): >= 0.90. Also printed: the ratio of the median
step times (steady state), and the ratio of CPU seconds of the process (all threads), which on a
machine the model already saturates is the least load-sensitive view of the pipeline's cost; and
the load average, since the machine may be shared.

Usage: python bench/pipeline_efficiency.py [--steps 15] [--rounds 12] [--batch 16] [--seconds 2] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from synthetic import synthetic_cache  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOAL = 0.90


def make_model(args: argparse.Namespace, n_classes: int):
    import keras

    from freesound_tf.config import FrontendConfig, ModelConfig
    from freesound_tf.losses import get_loss
    from freesound_tf.models import build_cnn9

    config = ModelConfig(variant=args.variant, stem_width=args.stem_width, block_widths=tuple(args.block_widths),
                         gru_units=args.gru_units, use_global_features=not args.no_global_features)
    frontend = FrontendConfig(n_fft=args.n_fft, hop_length=args.n_fft // 2, n_mels=args.n_mels)
    model = build_cnn9(config, frontend, n_classes, args.sample_rate, input_seconds=args.seconds)
    model.compile(optimizer=keras.optimizers.Nadam(1e-3), loss=get_loss("bce_smooth", smoothing=0.01))
    return model


class StepClock:
    """When a run starts and stops and when each batch arrives (fit callbacks, or calls in a loop)."""

    def __init__(self) -> None:
        self.start = self.stop = 0.0
        self.ticks: list[float] = []

    def begin(self, *_: object, **__: object) -> None:
        self.start = time.perf_counter()

    def tick(self, *_: object, **__: object) -> None:
        self.ticks.append(time.perf_counter())

    def end(self, *_: object, **__: object) -> None:
        self.stop = time.perf_counter()


def timed(run) -> dict:
    """Seconds of ``run(clock)`` from its start to its last batch, CPU seconds (this process, all
    threads) and the times between batches. Deleting the iterator afterwards is left out: in TF 2.20
    that can block until tf.data's autotuner next wakes up (its period doubles from 10 ms, so up to
    the run's own length again; seen for both sources when fit stops a repeated dataset after
    ``steps_per_epoch``, never between the epochs of a finite dataset, as training uses it)."""
    clock = StepClock()
    cpu = time.process_time()
    run(clock)
    return {"wall": clock.stop - clock.start, "cpu": time.process_time() - cpu, "steps": list(np.diff(clock.ticks))}


def fit(model, dataset, steps: int, clock: StepClock | None = None) -> None:
    import keras

    callbacks = [keras.callbacks.LambdaCallback(on_train_begin=clock.begin, on_train_batch_end=clock.tick,
                                                on_train_end=clock.end)] if clock else []
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=callbacks)


def iterate(dataset, steps: int, clock: StepClock) -> None:
    clock.begin()
    iterator = iter(dataset)
    for _ in range(steps):
        next(iterator)
        clock.tick()
    clock.end()


def summarize(rounds: list[dict], steps: int, batch: int) -> dict:
    """Medians over rounds (whole runs) and over every step of every round (steady state)."""
    wall = statistics.median(r["wall"] for r in rounds)
    step = statistics.median(s for r in rounds for s in r["steps"])
    return {"seconds": wall, "cpu_seconds": statistics.median(r["cpu"] for r in rounds),
            "clips_per_s": steps * batch / wall, "batches_per_s": steps / wall, "step_ms": 1000 * step,
            "step_clips_per_s": batch / step, "rounds": [{k: r[k] for k in ("wall", "cpu")} for r in rounds]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=256, help="clips in the synthetic cache")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--seconds", type=float, default=2.0, help="crop length")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=15, help="train steps per timed fit")
    parser.add_argument("--rounds", type=int, default=12, help="rounds of the two fits, back to back")
    parser.add_argument("--mixup", type=float, default=0.5, help="mixup probability")
    parser.add_argument("--variant", default="se")
    parser.add_argument("--stem-width", type=int, default=16)
    parser.add_argument("--block-widths", type=int, nargs="+", default=[16, 32, 48, 64])
    parser.add_argument("--gru-units", type=int, default=16)
    parser.add_argument("--n-fft", type=int, default=512)
    parser.add_argument("--n-mels", type=int, default=64)
    parser.add_argument("--no-global-features", action="store_true",
                        help="model and pipeline without the global-feature input (its GRU is slow to trace)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "pipeline_efficiency.json")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from freesound_tf.config import PipelineConfig
    from freesound_tf.data.cache import WaveformCache
    from freesound_tf.data.pipeline import TrainInput

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cache = WaveformCache(synthetic_cache(  # clips 1x-2.5x the crop: crops at random offsets
            Path(tmp), "bench", args.clips, (args.seconds, 2.5 * args.seconds), args.sample_rate))
        labels = np.eye(args.classes, dtype=np.float32)[np.arange(len(cache)) % args.classes]
        config = PipelineConfig(crop_seconds=args.seconds, batch_size=args.batch)
        inputs = ("waveform", "length") if args.no_global_features else ("waveform", "global_features", "length")
        train = TrainInput(cache, labels, config, args.sample_rate, inputs=inputs, mixup_prob=args.mixup)
        pipeline = train.dataset().repeat()

        # Pipeline alone, timed like a fit: a fresh iterator (empty prefetch buffer) each round.
        iterate(pipeline, 2, StepClock())
        times = {"pipeline alone": [timed(lambda c: iterate(pipeline, args.steps, c)) for _ in range(args.rounds)]}

        # The same kind of batches, materialised once: the in-memory reference. Re-batched from
        # clips so the batch dimension is unknown, as in the pipeline: both share one traced step.
        examples = tf.nest.map_structure(lambda *t: tf.concat(t, 0), *pipeline.take(args.steps))
        in_memory = tf.data.Dataset.from_tensor_slices(examples).batch(args.batch).repeat().prefetch(tf.data.AUTOTUNE)

        model = make_model(args, args.classes)
        sources = {"fit, pipeline": pipeline, "fit, in memory": in_memory}
        for label, dataset in sources.items():
            fit(model, dataset, 2)  # warm-up: traces the train step, fills caches
            times[label] = []
        for k in range(args.rounds):
            for label in sorted(sources, reverse=k % 2 == 1):  # ABBA: neither source always goes first
                times[label].append(timed(lambda c: fit(model, sources[label], args.steps, c)))
        cache.close()
    load_after = os.getloadavg()

    rows = {label: summarize(rounds, args.steps, args.batch) for label, rounds in times.items()}
    piped, memory = rows["fit, pipeline"], rows["fit, in memory"]
    paired = [m["wall"] / p["wall"] for p, m in zip(times["fit, pipeline"], times["fit, in memory"])]
    ratios = {"paired": statistics.median(paired),
              "step": piped["step_clips_per_s"] / memory["step_clips_per_s"],
              # With both cores busy training, throughput follows CPU time: steadier under other jobs' load.
              "cpu": memory["cpu_seconds"] / piped["cpu_seconds"]}
    headroom = rows["pipeline alone"]["step_clips_per_s"] / memory["step_clips_per_s"]

    print(f"cnn9 {args.variant} stem {args.stem_width} blocks {args.block_widths}, {args.batch} x "
          f"{args.seconds:g} s @ {args.sample_rate} Hz, mixup {args.mixup}, {args.steps} steps x "
          f"{args.rounds} rounds; {os.cpu_count()} CPUs, TF {tf.__version__}")
    print(f"load average (1 min) {load_before[0]:.2f} -> {load_after[0]:.2f}")
    print(f"{'':16s}{'step ms':>9s}{'clips/s':>9s}{'run s':>8s}{'clips/s':>9s}{'CPU s':>8s}")
    for label, row in rows.items():
        print(f"{label:16s}{row['step_ms']:9.1f}{row['step_clips_per_s']:9.1f}{row['seconds']:8.2f}"
              f"{row['clips_per_s']:9.1f}{row['cpu_seconds']:8.2f}")
    verdict = "OK" if ratios["paired"] >= GOAL else "MISSED"
    low, high = np.percentile(paired, [25, 75])
    print(f"fit, pipeline / fit, in memory: {ratios['paired']:.3f} median of rounds (quartiles {low:.2f}-{high:.2f}; "
          f"goal >= {GOAL:.2f}: {verdict}), {ratios['step']:.3f} by median step, {ratios['cpu']:.3f} by CPU time")
    print(f"pipeline alone / fit, in memory: {headroom:.1f}x headroom")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "settings": {k: v for k, v in vars(args).items() if k != "json"}, "cpu_count": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": load_after, "rows": rows, "ratio": ratios["paired"],
        "ratios": ratios, "round_ratios": paired, "headroom": headroom, "goal": GOAL}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
