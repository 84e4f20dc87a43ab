"""Log-mel frontend speed on CPU: librosa vs the in-graph frontend (fixed and trainable filterbank).

Same batch of 5 s 44.1 kHz clips for all three; the Keras frontends run as one compiled
function call on the whole batch (forward only), librosa clip by clip (melspectrogram +
power_to_db). The two frontends are timed in turn, round by round, so load from other jobs hits both alike. Prints median seconds per batch and the ratios the issue sets goals for:
fixed >= 3x faster than librosa; trainable <= 1.10x the time of fixed.

    python bench/frontend.py [--batch 32] [--repeats 11] [--threads 0]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU benchmark

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from freesound_tf.config import FrontendConfig  # noqa: E402
from freesound_tf.layers import build_frontend  # noqa: E402

SR = 44100
SECONDS = 5.0


def _interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per function, timing them in turn each round."""
    for fn in fns.values():
        fn()  # warm-up: tracing / caches
    times = {label: [] for label in fns}
    for _ in range(repeats):
        for label, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0: TF default)")
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)

    clips = (0.1 * np.random.default_rng(0).standard_normal((args.batch, int(SR * SECONDS)))).astype(np.float32)
    config = FrontendConfig()

    def run_librosa() -> None:
        for clip in clips:
            mel = librosa.feature.melspectrogram(y=clip, sr=SR, n_fft=config.n_fft, hop_length=config.hop_length,
                                                 n_mels=config.n_mels, power=config.power)
            librosa.power_to_db(mel, ref=np.max, top_db=config.top_db)

    batch = tf.constant(clips)
    frontends = {}
    for label, trainable in (("fixed", False), ("trainable", True)):
        frontend = build_frontend(FrontendConfig(trainable_filterbank=trainable), SR, clips.shape[1])
        forward = tf.function(lambda x, model=frontend: model(x, training=False))
        frontends[label] = lambda forward=forward: forward(batch).numpy()
    # librosa in its own block: its BLAS / FFT worker threads keep spinning for a while after each
    # call and would slow whatever TF runs next on a 2-core machine.
    results = _interleaved_medians({"librosa": run_librosa}, args.repeats)
    time.sleep(1.0)
    results.update(_interleaved_medians(frontends, args.repeats))

    print(f"batch {args.batch} x {SECONDS:g} s @ {SR} Hz, median of {args.repeats}, "
          f"{os.cpu_count()} CPUs visible, TF {tf.__version__}, librosa {librosa.__version__}")
    for label, seconds in results.items():
        print(f"  {label:10s} {seconds * 1000:9.1f} ms/batch  {seconds / args.batch * 1000:7.2f} ms/clip")
    speedup = results["librosa"] / results["fixed"]
    overhead = results["trainable"] / results["fixed"]
    print(f"  fixed speed-up over librosa: {speedup:.2f}x (goal >= 3x) {'OK' if speedup >= 3 else 'MISSED'}")
    print(f"  trainable / fixed time:      {overhead:.3f}x (goal <= 1.10x) {'OK' if overhead <= 1.10 else 'MISSED'}")


if __name__ == "__main__":
    main()
