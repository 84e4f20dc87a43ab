"""Global waveform statistics and the clip-length feature fed beside the log-mel input.

Definition (``global_features(y, steps)``), crisp enough to re-implement in-graph:

1. If ``len(y) < steps`` the clip is first repeated cyclically to exactly ``steps`` samples
   (``np.resize``); this guarantees every window below is non-empty. Longer clips are used as is.
2. ``n = len(y)``, ``stride = n / steps`` (float64). For step ``s`` in ``0..steps-1``:
   ``i = s * stride``, ``start = max(0, int(i - stride / 2))``, ``end = min(n, int(i + 1.5 * stride))``
   where ``int`` truncates toward zero. Neighbouring windows overlap; each spans ~2 strides.
3. On the window ``w = y[start:end]`` (float64 arithmetic) the 12 values, in order, are
   mean, std (population, ddof=0), max - min, and the percentiles
   0, 1, 25, 30, 50, 60, 75, 99, 100 with numpy's default linear interpolation.

The result is ``(steps, 12)`` float32. It is computed on the untrimmed clip.
"""
from __future__ import annotations

import numpy as np

PERCENTILES = (0.0, 1.0, 25.0, 30.0, 50.0, 60.0, 75.0, 99.0, 100.0)
GLOBAL_FEATURE_NAMES: tuple[str, ...] = ("mean", "std", "range") + tuple(
    f"p{int(q)}" for q in PERCENTILES)


def window_bounds(n: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) int64 arrays of the ``steps`` windows over ``n`` samples (see module doc)."""
    stride = n / steps
    centres = np.arange(steps, dtype=np.float64) * stride
    # np.trunc matches Python's int() on these float64 values, bit for bit.
    start = np.maximum(0, np.trunc(centres - stride / 2)).astype(np.int64)
    end = np.minimum(n, np.trunc(centres + 1.5 * stride)).astype(np.int64)
    return start, end


def global_features(y: np.ndarray, steps: int = 128) -> np.ndarray:
    """(steps, 12) float32 windowed statistics of waveform ``y`` (definition in the module doc)."""
    y = np.asarray(y).reshape(-1)
    if y.dtype not in (np.float32, np.float64):
        y = y.astype(np.float64)
    if y.size == 0:
        raise ValueError("global_features: empty waveform")
    if len(y) < steps:
        y = np.resize(y, steps)
    start, end = window_bounds(len(y), steps)
    lengths = end - start
    out = np.empty((steps, len(GLOBAL_FEATURE_NAMES)), dtype=np.float64)
    # Windows differ in length by only a few samples, so each group of equal-length windows
    # becomes one dense (k, length) matrix and is reduced row-wise: exact and loop-free over steps.
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        windows = y[start[rows, None] + np.arange(length)]
        out[rows, 0] = windows.mean(axis=1, dtype=np.float64)
        out[rows, 1] = windows.std(axis=1, dtype=np.float64)
        # One sort per row serves all nine percentiles (and min/max), several times faster
        # than np.percentile's multi-kth partition; order statistics are exact in any dtype.
        ordered = np.sort(windows, axis=1)
        out[rows, 2] = ordered[:, -1].astype(np.float64) - ordered[:, 0]
        out[rows, 3:] = _linear_percentiles(ordered, int(length))
    return out.astype(np.float32)


def _linear_percentiles(ordered: np.ndarray, n: int) -> np.ndarray:
    """numpy's default ("linear") percentiles of each sorted row: interpolate at q/100 * (n-1)."""
    position = np.asarray(PERCENTILES) / 100.0 * (n - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    weight = position - below
    low, high = ordered[:, below].astype(np.float64), ordered[:, above].astype(np.float64)
    return low + (high - low) * weight


def length_feature(n_trimmed_samples: int, sample_rate: int, norm_seconds: float = 10.0) -> float:
    """Trimmed clip length as a fraction of ``norm_seconds`` (1.0 == a clip of that duration)."""
    return float(n_trimmed_samples) / (norm_seconds * sample_rate)
