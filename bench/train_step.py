"""Train-step throughput in float32, mixed precision and with XLA, side by side, as a fraction of device peak.

For each model, one run times ``--steps`` train steps (after ``--warmup`` steps, which include
tracing and XLA compilation) on one batch of random in-memory tensors that sit on the device, so
no input pipeline is measured. Configurations: float32, mixed precision (mixed_float16 on a GPU,
mixed_bfloat16 on CPU; ``--mixed`` overrides), and both again with ``jit_compile=True``.
The optimizer is the recipes' Nadam (wrapped for loss scaling under mixed_float16) with BCE.

Training FLOPs per clip are counted as 3 x the forward FLOPs of
``freesound_tf.models.forward_flops`` (TensorFlow's profiler, a multiply-add = 2; the backward
pass is taken as twice the forward; the STFT's FFT is not counted). Achieved FLOP/s is divided by the
device peak for the configuration's compute dtype: ``--peak-tflops`` if given, else a table of
known GPUs (dense tensor-core peaks; float32 is the non-tensor-core rate, and TensorFlow runs
float32 convolutions as TF32 on Ampere and later by default, so float32 can exceed 100%), else the
rate of a large float32 matmul measured in the same run (CPU, unknown GPUs).

    python bench/train_step.py                                        # cnn9 se_w1.0, 44.1 kHz, 5 s, batch 32
    python bench/train_step.py --models models/demo.toml --sample-rate 16000 --seconds 2 --batch 8 --steps 5

``--models`` takes registered names with an optional preset (``cnn9:msc_se_w2.0``; ``freesound-tf
models`` lists them) or recipe TOML files (their model and frontend). The table is printed and
written as JSON to ``--out`` (default ``bench/results/train_step.json``).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from freesound_tf.config import FrontendConfig, ModelConfig, load_recipe  # noqa: E402
from freesound_tf.losses import get_loss  # noqa: E402
from freesound_tf.models import forward_flops, get, presets  # noqa: E402
from freesound_tf.training.precision import compute_dtype, dtype_policy, loss_scaled  # noqa: E402

# Dense peak TFLOP/s by compute dtype; the first name fragment found in the device name wins.
GPU_PEAKS = (
    ("H100 PCIe", {"float16": 756.0, "bfloat16": 756.0, "float32": 51.0}),
    ("H100", {"float16": 989.0, "bfloat16": 989.0, "float32": 67.0}),  # SXM
    ("H200", {"float16": 989.0, "bfloat16": 989.0, "float32": 67.0}),
    ("A100", {"float16": 312.0, "bfloat16": 312.0, "float32": 19.5}),
)
FLOPS_NOTE = ("training FLOPs per clip = 3 x freesound_tf.models.forward_flops (profiler float ops, "
              "multiply-add = 2, FFT not counted; backward taken as 2 x forward)")
DEFAULT_OUT = Path(__file__).parent / "results" / "train_step.json"
DTYPES = ("float32", "float16", "bfloat16")


def model_spec(spec: str) -> tuple[str, ModelConfig, FrontendConfig]:
    """``name[:preset]`` or a recipe TOML -> (label, model config, frontend config)."""
    if spec.endswith(".toml"):
        recipe = load_recipe(spec)
        return f"{Path(spec).stem} ({recipe.model.name})", recipe.model, recipe.frontend
    name, _, preset = spec.partition(":")
    if not preset:
        get(name)  # unknown names fail listing the known ones
        return name, ModelConfig(name=name), FrontendConfig()
    known = presets(name)
    if preset not in known:
        raise SystemExit(f"--models {spec}: {name} has no preset {preset!r}; known: {', '.join(known) or 'none'}")
    return spec, known[preset], FrontendConfig()


def build(config: ModelConfig, frontend: FrontendConfig, precision: str, args: argparse.Namespace) -> keras.Model:
    with dtype_policy(precision):
        return get(config.name)(config, frontend, args.n_classes, args.sample_rate, input_seconds=args.seconds)


def device_batch(model: keras.Model, batch: int, seed: int = 0) -> tuple:
    """Random inputs of the model's input structure and multi-label targets, placed on the default device."""
    rng = np.random.default_rng(seed)

    def tensor(shape) -> tf.Tensor:
        return tf.identity(tf.constant(0.1 * rng.standard_normal(shape), tf.float32))

    x = tf.nest.map_structure(lambda spec: tensor((batch, *spec.shape[1:])), model.input)
    y = tf.identity(tf.constant((rng.random((batch, model.output_shape[-1])) < 0.1).astype(np.float32)))
    return x, y


def time_steps(model: keras.Model, x, y, warmup: int, steps: int) -> float:
    """Seconds per train step. Steps are dispatched back to back (no host sync in between); reading
    the last loss waits for the device, whose queue runs the steps in order."""
    logs = model.train_on_batch(x, y, return_dict=True)  # builds, traces and compiles
    # The function train_on_batch calls, minus its per-step copy of the logs to the host.
    data = [(x, y, None)]
    for _ in range(warmup):
        logs = model.train_function(iter(data))
    float(logs["loss"])
    start = time.perf_counter()
    for _ in range(steps):
        logs = model.train_function(iter(data))
    float(logs["loss"])
    return (time.perf_counter() - start) / steps


def matmul_tflops(n: int, repeats: int = 5) -> float:
    """Best rate of an n x n float32 matmul on the default device, in TFLOP/s."""
    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    float(matmul())
    best = min(_timed(matmul) for _ in range(repeats))
    return 2 * n**3 / best / 1e12


def _timed(fn) -> float:
    start = time.perf_counter()
    float(fn())
    return time.perf_counter() - start


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def device_name() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "unknown GPU")
    return f"CPU {_cpu_name()} ({os.cpu_count()} threads)"


def known_peaks(args: argparse.Namespace, device: str, gpu: bool) -> tuple[dict[str, float] | None, str]:
    """(peak TFLOP/s per compute dtype, where it comes from); None when it has to be measured."""
    if args.peak_tflops:
        return dict.fromkeys(DTYPES, args.peak_tflops), "--peak-tflops"
    for fragment, peaks in GPU_PEAKS:
        if gpu and fragment in device:
            return peaks, f"table ({fragment}, dense)"
    return None, ""


def run_model(spec: str, args: argparse.Namespace, mixed: str) -> list[dict]:
    label, config, frontend = model_spec(spec)
    keras.backend.clear_session()
    flops = 3 * forward_flops(build(config, frontend, "float32", args))
    rows, baseline = [], None
    for precision in ("float32", mixed):
        for jit in (False, True):
            keras.backend.clear_session()
            gc.collect()
            row = {"model": label, "precision": precision, "compute_dtype": compute_dtype(precision), "xla": jit,
                   "train_flops_per_clip": flops}
            try:
                model = build(config, frontend, precision, args)
                model.compile(optimizer=loss_scaled(keras.optimizers.Nadam(1e-4), precision), loss=get_loss("bce"),
                              jit_compile=jit)
                x, y = device_batch(model, args.batch)
                seconds = time_steps(model, x, y, args.warmup, args.steps)
            except Exception as err:  # one failing configuration (OOM, an op XLA lacks) must not end the run
                row["error"] = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"
                rows.append(row)
                print(_format(row), flush=True)
                continue
            clips = args.batch / seconds
            if precision == "float32" and not jit:
                baseline = clips
            row.update(xla=bool(model.jit_compile), step_ms=1e3 * seconds, clips_per_s=clips,
                       speedup_vs_float32=clips / baseline if baseline else float("nan"),
                       achieved_tflops=clips * flops / 1e12)
            rows.append(row)
            print(_format(row), flush=True)
    return rows


def _format(row: dict) -> str:
    config = f"{row['precision']}{' +XLA' if row['xla'] else ''}"
    if "error" in row:
        return f"{row['model']:<22} {config:<22} failed: {row['error']}"
    of_peak = f"{100 * row['fraction_of_peak']:>7.1f}%" if "fraction_of_peak" in row else f"{'-':>8}"
    return (f"{row['model']:<22} {config:<22} {row['step_ms']:>9.1f} {row['clips_per_s']:>9.1f} "
            f"{row['speedup_vs_float32']:>6.2f}x {row['train_flops_per_clip'] / 1e9:>10.2f} "
            f"{row['achieved_tflops']:>9.3f} {of_peak}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn9:se_w1.0"], help="name[:preset] or recipe .toml")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the compiling first one")
    parser.add_argument("--seconds", type=float, default=5.0, help="crop length")
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--n-classes", type=int, default=80)
    parser.add_argument("--mixed", choices=("mixed_float16", "mixed_bfloat16"),
                        help="mixed policy (default: mixed_float16 on a GPU, mixed_bfloat16 on CPU)")
    parser.add_argument("--peak-tflops", type=float, help="device peak in TFLOP/s for every dtype")
    parser.add_argument("--matmul-size", type=int, default=2048, help="matmul measuring the peak without a table")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if min(args.batch, args.steps) < 1 or args.warmup < 0:
        parser.error("--batch and --steps must be >= 1, --warmup >= 0")

    gpu = bool(tf.config.list_physical_devices("GPU"))
    mixed = args.mixed or ("mixed_float16" if gpu else "mixed_bfloat16")
    device = device_name()
    peaks, source = known_peaks(args, device, gpu)
    # Without a known peak, the matmul runs before and after the models and the faster one counts, so
    # load from other processes during one of them does not inflate the fractions.
    rates = [] if peaks else [matmul_tflops(args.matmul_size)]
    print(f"{device}: batch {args.batch}, {args.steps} timed steps, {args.seconds:g} s at {args.sample_rate} Hz")
    header = (f"{'model':<22} {'config':<22} {'step ms':>9} {'clips/s':>9} {'vs f32':>7} "
              f"{'GFLOP/clip':>10} {'TFLOP/s':>9} {'of peak':>8}")
    print(header)
    rows = [row for spec in args.models for row in run_model(spec, args, mixed)]
    if not peaks:
        rates.append(matmul_tflops(args.matmul_size))
        peaks = dict.fromkeys(DTYPES, max(rates))
        source = (f"measured float32 {args.matmul_size}^2 matmul, best of before/after the models "
                  f"({' / '.join(f'{r:.3f}' for r in rates)} TFLOP/s)")
    for row in rows:
        if "error" not in row:
            row["peak_tflops"] = peaks[row["compute_dtype"]]
            row["fraction_of_peak"] = row["achieved_tflops"] / row["peak_tflops"]
    print(f"\npeak: {source}\n{FLOPS_NOTE}\n{header}")
    for row in rows:
        print(_format(row))
    result = {"device": device, "gpu": gpu, "peak_tflops": peaks, "peak_source": source,
              "tf32_enabled": bool(gpu and tf.config.experimental.tensor_float_32_execution_enabled()),
              "flops_note": FLOPS_NOTE, "batch": args.batch, "steps": args.steps, "warmup": args.warmup,
              "seconds": args.seconds, "sample_rate": args.sample_rate, "n_classes": args.n_classes,
              "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
