"""Benchmark: the training input pipelines alone, and training throughput from them vs from in-memory batches.

Part 1, loaders (default 5 s crops at 44.1 kHz, batch 32, mixup p = 0.5, global features and length),
no model: CPU milliseconds of this process (all threads) per batch and batches/s for
  python           ``TrainInput``: numpy crops from the HDF5 cache and numpy mixup in ``tf.numpy_function``
  graph, memory    ``GraphTrainInput`` with the cache's int16 samples in memory (TensorFlow ops only)
  graph, records   ``GraphTrainInput`` streaming the cache's TFRecord shards
Each loader runs alone (the others' prefetch buffers are full, so they idle), in alternating rounds.
Goals: graph ≤ 1/5 of python's CPU per batch, and ≥ 3,000 clips/s of batches on 2 cores.

Part 2, fit (a small cnn9, default 2 s crops at 16 kHz, batch 16): ``model.fit`` for ``--epochs`` epochs of
``--clips / --batch`` steps, as training runs a stage:
  fit, graph       from ``GraphTrainInput`` (memory source), continuous: one iterator for all epochs
  fit, records     from ``GraphTrainInput`` (records source), continuous
  fit, records, an iterator per epoch   the records source as training ran it before (a one-epoch
                   dataset, so a new iterator, function instantiation and shuffle-buffer fill each epoch)
  fit, in memory   one epoch of batches taken from the graph pipeline beforehand and held as tensors
in rotating order each round, so a burst of load from other jobs mostly hits all of a round. The goal
is on the median over rounds of the round's ratio of clips/s (from the start of ``fit`` to its last
step): fit from the graph pipeline / fit from memory ≥ 0.95. Also printed: the ratio of median step
times and of CPU seconds, and the load average, since the machine may be shared.

Usage: python bench/pipeline_efficiency.py [--loader-batches 60] [--epochs 3] [--rounds 8] [--json OUT]
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
FIT_GOAL, CPU_GOAL, CLIPS_GOAL = 0.95, 5.0, 3000


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
    the run's own length again), as for the in-memory reference, a repeated dataset with autotuning
    on; training's continuous inputs turn autotuning off for that reason."""
    clock = StepClock()
    cpu = time.process_time()
    run(clock)
    return {"wall": clock.stop - clock.start, "cpu": time.process_time() - cpu, "steps": list(np.diff(clock.ticks))}


def fit(model, dataset, epochs: int, steps_per_epoch: int | None, clock: StepClock | None = None) -> None:
    import keras

    callbacks = [keras.callbacks.LambdaCallback(on_train_begin=clock.begin, on_train_batch_end=clock.tick,
                                                on_train_end=clock.end)] if clock else []
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=0, callbacks=callbacks)


def pull(iterator, batches: int, clock: StepClock) -> None:
    clock.begin()
    for _ in range(batches):
        next(iterator)
        clock.tick()
    clock.end()


def summarize(rounds: list[dict], steps: int, batch: int) -> dict:
    """Medians over rounds (whole runs) and over every step of every round (steady state)."""
    wall = statistics.median(r["wall"] for r in rounds)
    step = statistics.median(s for r in rounds for s in r["steps"])
    cpu = statistics.median(r["cpu"] for r in rounds)
    return {"seconds": wall, "cpu_seconds": cpu, "cpu_ms_per_batch": 1000 * cpu / steps,
            "clips_per_s": steps * batch / wall, "batches_per_s": steps / wall, "step_ms": 1000 * step,
            "step_clips_per_s": batch / step, "rounds": [{k: r[k] for k in ("wall", "cpu")} for r in rounds]}


def loaders(args: argparse.Namespace, work: Path) -> dict:
    """Part 1: each loader alone, in alternating rounds."""
    from freesound_tf.config import PipelineConfig
    from freesound_tf.data.cache import WaveformCache
    from freesound_tf.data.graph_pipeline import GraphTrainInput
    from freesound_tf.data.pipeline import TrainInput

    rate, seconds, batch = args.loader_rate, args.loader_seconds, args.loader_batch
    cache = WaveformCache(synthetic_cache(work, "loaders", args.loader_clips, (seconds, 2.5 * seconds), rate))
    labels = np.eye(args.classes, dtype=np.float32)[np.arange(len(cache)) % args.classes]
    config = PipelineConfig(crop_seconds=seconds, batch_size=batch)
    inputs = {"python": TrainInput(cache, labels, config, rate, mixup_prob=args.mixup),
              "graph, memory": GraphTrainInput(cache, labels, config, rate, mixup_prob=args.mixup, source="memory"),
              "graph, records": GraphTrainInput(cache, labels, config, rate, mixup_prob=args.mixup, source="records")}
    iterators = {label: iter(train.dataset().repeat()) for label, train in inputs.items()}
    for iterator in iterators.values():
        pull(iterator, 5, StepClock())  # traces, fills caches and prefetch buffers
    times = {label: [] for label in iterators}
    for k in range(args.loader_rounds):
        for label in sorted(iterators, reverse=k % 2 == 1):
            times[label].append(timed(lambda c: pull(iterators[label], args.loader_batches, c)))
    return {label: summarize(rounds, args.loader_batches, batch) for label, rounds in times.items()}


def fits(args: argparse.Namespace, work: Path) -> tuple[dict, dict]:
    """Part 2: fit from the graph pipeline (both sources, run as training runs them) vs from in-memory tensors."""
    import tensorflow as tf

    from freesound_tf.config import PipelineConfig
    from freesound_tf.data.cache import WaveformCache
    from freesound_tf.data.graph_pipeline import GraphTrainInput
    from freesound_tf.data.pipeline import EpochPlan

    cache = WaveformCache(synthetic_cache(  # clips 1x-2.5x the crop: crops at random offsets
        work, "fit", args.clips, (args.seconds, 2.5 * args.seconds), args.sample_rate))
    labels = np.eye(args.classes, dtype=np.float32)[np.arange(len(cache)) % args.classes]
    config = PipelineConfig(crop_seconds=args.seconds, batch_size=args.batch)
    inputs = ("waveform", "length") if args.no_global_features else ("waveform", "global_features", "length")
    train = {source: GraphTrainInput(cache, labels, config, args.sample_rate, inputs=inputs, mixup_prob=args.mixup,
                                     source=source) for source in ("memory", "records")}
    steps = len(train["memory"])
    plan = EpochPlan(0, (args.mixup,))
    # One epoch of the same kind of batches, materialised once: the in-memory reference, with the same static
    # shapes as the graph pipeline's batches, so that all sources share one traced train step.
    examples = tf.nest.map_structure(lambda *t: tf.concat(t, 0), *train["memory"].dataset())
    in_memory = tf.data.Dataset.from_tensor_slices(examples).batch(args.batch, drop_remainder=True).repeat()
    in_memory = in_memory.prefetch(tf.data.AUTOTUNE)
    # label -> (a new dataset for a run, steps_per_epoch): a continuous input is fitted as fit_stage fits it.
    sources = {"fit, graph": (lambda: train["memory"].dataset(epochs=plan), steps),
               "fit, records": (lambda: train["records"].dataset(epochs=plan), steps),
               "fit, records, an iterator per epoch": (train["records"].dataset, None),
               "fit, in memory": (lambda: in_memory, steps)}
    model = make_model(args, args.classes)
    times = {}
    for label, (dataset, per_epoch) in sources.items():
        fit(model, dataset(), 1, per_epoch)  # warm-up: traces the train step, fills caches
        times[label] = []
    order = list(sources)
    for k in range(args.rounds):
        for label in order[k % len(order):] + order[:k % len(order)]:  # rotating: no source always goes first
            dataset, per_epoch = sources[label]
            times[label].append(timed(lambda c: fit(model, dataset(), args.epochs, per_epoch, c)))
    rows = {label: summarize(rounds, args.epochs * steps, args.batch) for label, rounds in times.items()}
    ratios = {}
    for label in [name for name in order if name != "fit, in memory"]:
        paired = [m["wall"] / p["wall"] for p, m in zip(times[label], times["fit, in memory"])]
        ratios[label] = {"paired": statistics.median(paired), "quartiles": list(np.percentile(paired, [25, 75])),
                         "step": rows[label]["step_clips_per_s"] / rows["fit, in memory"]["step_clips_per_s"],
                         "cpu": rows["fit, in memory"]["cpu_seconds"] / rows[label]["cpu_seconds"]}
    return rows, ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--mixup", type=float, default=0.5, help="mixup probability")
    part1 = parser.add_argument_group("part 1, loaders")
    part1.add_argument("--loader-clips", type=int, default=128, help="clips in the loaders' synthetic cache")
    part1.add_argument("--loader-rate", type=int, default=44100)
    part1.add_argument("--loader-seconds", type=float, default=5.0, help="crop length")
    part1.add_argument("--loader-batch", type=int, default=32)
    part1.add_argument("--loader-batches", type=int, default=60, help="batches per timed run")
    part1.add_argument("--loader-rounds", type=int, default=3)
    part2 = parser.add_argument_group("part 2, fit")
    part2.add_argument("--clips", type=int, default=256, help="clips in the fit's synthetic cache")
    part2.add_argument("--sample-rate", type=int, default=16000)
    part2.add_argument("--seconds", type=float, default=2.0, help="crop length")
    part2.add_argument("--batch", type=int, default=16)
    part2.add_argument("--epochs", type=int, default=3, help="epochs per timed fit (of --clips / --batch steps)")
    part2.add_argument("--rounds", type=int, default=8, help="rounds of the three fits")
    part2.add_argument("--variant", default="se")
    part2.add_argument("--stem-width", type=int, default=16)
    part2.add_argument("--block-widths", type=int, nargs="+", default=[16, 32, 48, 64])
    part2.add_argument("--gru-units", type=int, default=16)
    part2.add_argument("--n-fft", type=int, default=512)
    part2.add_argument("--n-mels", type=int, default=64)
    part2.add_argument("--no-global-features", action="store_true",
                       help="model and pipeline without the global-feature input (its GRU is slow to trace)")
    parser.add_argument("--skip-fit", action="store_true", help="part 1 only")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "pipeline_efficiency.json")
    args = parser.parse_args(argv)

    import tensorflow as tf

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        loader_rows = loaders(args, Path(tmp))
        fit_rows, ratios = ({}, {}) if args.skip_fit else fits(args, Path(tmp))
    load_after = os.getloadavg()

    print(f"{os.cpu_count()} CPUs, TF {tf.__version__}; "
          f"load average (1 min) {load_before[0]:.2f} -> {load_after[0]:.2f}")
    batch = args.loader_batch
    print(f"\nPart 1, loaders alone: batches of {batch} x {args.loader_seconds:g} s crops at {args.loader_rate} Hz, "
          f"mixup {args.mixup}, global features + length ({args.loader_batches} batches x {args.loader_rounds} rounds)")
    print(f"{'':16s}{'CPU ms/batch':>13s}{'batches/s':>11s}{'clips/s':>9s}")
    for label, row in loader_rows.items():
        print(f"{label:16s}{row['cpu_ms_per_batch']:13.1f}{row['batches_per_s']:11.1f}{row['clips_per_s']:9.0f}")
    python_cpu = loader_rows["python"]["cpu_ms_per_batch"]
    for label in ("graph, memory", "graph, records"):
        row = loader_rows[label]
        cpu_ratio = python_cpu / row["cpu_ms_per_batch"]
        print(f"{label}: {cpu_ratio:.1f}x less CPU per batch than python (goal >= {CPU_GOAL:g}x: "
              f"{'OK' if cpu_ratio >= CPU_GOAL else 'MISSED'}), {row['clips_per_s']:.0f} clips/s "
              f"(goal >= {CLIPS_GOAL}: {'OK' if row['clips_per_s'] >= CLIPS_GOAL else 'MISSED'})")

    if fit_rows:
        print(f"\nPart 2, fit: cnn9 {args.variant} stem {args.stem_width} blocks {args.block_widths}, "
              f"{args.batch} x {args.seconds:g} s @ {args.sample_rate} Hz, mixup {args.mixup}, "
              f"{args.epochs} epochs of {args.clips // args.batch} steps x {args.rounds} rounds")
        print(f"{'':36s}{'step ms':>9s}{'clips/s':>9s}{'run s':>8s}{'clips/s':>9s}{'CPU s':>8s}")
        for label, row in fit_rows.items():
            print(f"{label:36s}{row['step_ms']:9.1f}{row['step_clips_per_s']:9.1f}{row['seconds']:8.2f}"
                  f"{row['clips_per_s']:9.1f}{row['cpu_seconds']:8.2f}")
        for label, r in ratios.items():
            verdict = "OK" if r["paired"] >= FIT_GOAL else "MISSED"
            print(f"{label} / fit, in memory: {r['paired']:.3f} median of rounds (quartiles "
                  f"{r['quartiles'][0]:.2f}-{r['quartiles'][1]:.2f}; goal >= {FIT_GOAL:.2f}: {verdict}), "
                  f"{r['step']:.3f} by median step, {r['cpu']:.3f} by CPU time")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "settings": {k: v for k, v in vars(args).items() if k != "json"}, "cpu_count": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": load_after, "loaders": loader_rows, "fits": fit_rows,
        "fit_ratios": ratios, "goals": {"fit": FIT_GOAL, "cpu": CPU_GOAL, "clips_per_s": CLIPS_GOAL}}, indent=1,
        default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
