"""Benchmark: inference speed of one cnn9, Keras paths vs its exported SavedModel.

The model is built from a recipe (default models/demo.toml; random weights unless --weights
gives a trained ``.keras`` of that recipe) with a variable-length waveform input, exported with
``model.export(dir, format="tf_saved_model")`` and loaded back in the same process. On the same
inputs it times
  keras predict      ``model.predict(x, verbose=0)``
  predict_on_batch   ``model.predict_on_batch(x)``
  tf.function call   ``tf.function(model)(x, training=False)``
  SavedModel serve   the loaded SavedModel's ``serve`` endpoint
for a batch of ``--batch`` crops (median seconds) and for one ``--clip-seconds`` clip (p50 / p90
latency over ``--repeats`` calls after warm-up). The paths run in turn, call by call, so load from
other jobs hits them alike. Goal: SavedModel serve no slower than the Keras paths.

``--serving-export RUN`` also times the freesound_tf.export serving graph (TTA crops, every fold
model, in-graph global features) on one clip; RUN is a run folder (exported here to a temporary
folder) or an existing export (a folder holding ``1/saved_model.pb`` or ``saved_model.pb``).

Usage: python bench/inference.py [--recipe models/demo.toml] [--batch 32] [--repeats 50] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def model_inputs(names: tuple[str, ...], batch: int, samples: int, steps: int, sample_rate: int,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random audio plus side inputs of the right shapes (their values do not change the speed)."""
    out = {"waveform": (0.1 * rng.standard_normal((batch, samples))).astype(np.float32),
           "global_features": rng.standard_normal((batch, steps, 12)).astype(np.float32),
           "length": np.full((batch, 1), samples / (10.0 * sample_rate), np.float32)}
    return {k: out[k] for k in names}


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each function, calling them in turn ``repeats`` times after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {label: [] for label in fns}
    for _ in range(repeats):
        for label, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    return times


def percentiles(values: list[float]) -> dict[str, float]:
    p50, p90 = np.percentile(values, [50, 90])
    return {"p50_ms": 1000 * float(p50), "p90_ms": 1000 * float(p90), "min_ms": 1000 * min(values)}


def load_serving_export(path: Path, work: Path) -> tuple[object, int]:
    """An export's loaded SavedModel (exported from ``path`` first if it is a run folder) and its sample rate."""
    import tensorflow as tf

    from freesound_tf.export.serving import export_run, latest_version

    saved = export_run([path], work / "serving") if (path / "recipe.toml").exists() else latest_version(path)
    loaded = tf.saved_model.load(str(saved))
    return loaded, int(loaded.signatures["metadata"]()["sample_rate"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=REPO / "models" / "demo.toml")
    parser.add_argument("--weights", type=Path, help="a trained .keras of this recipe, e.g. RUN/fold0/best.keras (set --classes to its class "
                        "count); default: random weights")
    parser.add_argument("--classes", type=int, default=80, help="output classes of the random model")
    parser.add_argument("--batch", type=int, default=32, help="crops per batch (crop length from the recipe)")
    parser.add_argument("--clip-seconds", type=float, default=5.0, help="length of the single-clip input")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per path for the single clip")
    parser.add_argument("--batch-repeats", type=int, default=15, help="timed calls per path for the batch")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--serving-export", type=Path, help="run folder or export folder to time as well")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "inference.json")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from freesound_tf.config import load_recipe
    from freesound_tf.inference import model_inputs as recipe_inputs
    from freesound_tf.models import build_model

    recipe = load_recipe(args.recipe)
    model = build_model(recipe, args.classes, variable_length=True)
    if args.weights:
        model.set_weights(keras.models.load_model(args.weights, compile=False).get_weights())
    sr, steps = recipe.audio.sample_rate, recipe.audio.global_steps
    names = recipe_inputs(recipe)
    rng = np.random.default_rng(0)
    inputs = {"batch": model_inputs(names, args.batch, int(round(recipe.pipeline.crop_seconds * sr)), steps, sr, rng),
              "clip": model_inputs(names, 1, int(round(args.clip_seconds * sr)), steps, sr, rng)}

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model.export(f"{tmp}/saved", format="tf_saved_model", verbose=False)
        saved = tf.saved_model.load(f"{tmp}/saved")  # keep the object: its endpoint uses its variables
        serve = saved.serve
        call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        serving = load_serving_export(args.serving_export, Path(tmp)) if args.serving_export else None

        results: dict[str, dict] = {}
        outputs: dict[str, dict[str, np.ndarray]] = {}
        for shape, x in inputs.items():
            paths = {
                "keras predict": lambda x=x: model.predict(x, batch_size=len(x["waveform"]), verbose=0),
                "predict_on_batch": lambda x=x: model.predict_on_batch(x),
                "tf.function call": lambda x=x: call(x).numpy(),
                "SavedModel serve": lambda x=x: serve(x).numpy(),
            }
            outputs[shape] = {label: np.asarray(fn()) for label, fn in paths.items()}
            repeats = args.batch_repeats if shape == "batch" else args.repeats
            results[shape] = {label: percentiles(v) for label, v in interleaved(paths, repeats, args.warmup).items()}
        if serving is not None:
            loaded, rate = serving
            fn = loaded.signatures["serving_default"]
            wave = tf.constant(0.1 * rng.standard_normal((1, int(round(args.clip_seconds * rate)))), tf.float32)
            times = interleaved({"serving export": lambda: fn(waveform=wave)["scores"].numpy()}, args.repeats,
                                args.warmup)
            results["clip"]["serving export (TTA, folds)"] = percentiles(times["serving export"])
    load_after = os.getloadavg()

    # Every path must compute the same scores, or the timings compare different work.
    max_diff = max(float(np.abs(out - outs["keras predict"]).max())
                   for outs in outputs.values() for out in outs.values())
    if max_diff > 1e-4:
        raise SystemExit(f"paths disagree: max |score difference| {max_diff:.2e}")
    crop_s = recipe.pipeline.crop_seconds
    print(f"{args.recipe.name}: {recipe.model.name} {recipe.model.variant}, {model.count_params():,} parameters, "
          f"{args.classes} classes, {sr} Hz; {os.cpu_count()} CPUs, TF {tf.__version__}, Keras {keras.__version__}")
    print(f"load average (1 min) {load_before[0]:.2f} -> {load_after[0]:.2f}; max score difference {max_diff:.1e}")
    print(f"{'':30s}{'batch of ' + str(args.batch) + ' x ' + format(crop_s, 'g') + ' s':>26s}"
          f"{'one ' + format(args.clip_seconds, 'g') + ' s clip':>24s}")
    print(f"{'path':30s}{'median ms':>12s}{'crops/s':>14s}{'p50 ms':>12s}{'p90 ms':>12s}")
    for label in results["clip"]:
        b, c = results["batch"].get(label), results["clip"][label]
        batch_cols = f"{b['p50_ms']:12.1f}{1000 * args.batch / b['p50_ms']:14.1f}" if b else f"{'-':>12s}{'-':>14s}"
        print(f"{label:30s}{batch_cols}{c['p50_ms']:12.2f}{c['p90_ms']:12.2f}")
    keras_paths = ("keras predict", "predict_on_batch", "tf.function call")
    # p50 is the headline; min (the least disturbed call) is steadier while other jobs load the machine.
    ratios = {stat: {shape: {label: row["SavedModel serve"][stat] / row[label][stat] for label in keras_paths}
                     for shape, row in results.items()} for stat in ("p50_ms", "min_ms")}
    for shape in results:
        p50, best = ratios["p50_ms"][shape], ratios["min_ms"][shape]
        verdict = "OK" if max(p50.values()) <= 1.0 else "MISSED"
        print(f"SavedModel time / Keras path time, {shape}, p50 (min): "
              + ", ".join(f"{k} {p50[k]:.2f} ({best[k]:.2f})" for k in keras_paths) + f"; goal <= 1.00 {verdict}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "recipe": str(args.recipe), "weights": str(args.weights) if args.weights else None,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "recipe", "weights", "serving_export")},
        "serving_export": str(args.serving_export) if args.serving_export else None, "cpu_count": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": load_after, "max_score_difference": max_diff,
        "results": results, "savedmodel_over_keras": ratios["p50_ms"],
        "savedmodel_over_keras_min": ratios["min_ms"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
