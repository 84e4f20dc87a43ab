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

import numba
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
    """(steps, 12) float32 windowed statistics of waveform ``y`` (definition in the module doc).

    Bit for bit what numpy gives on each window (``mean``, ``std``, ``np.sort`` and linear
    interpolation), in about a quarter of the time: windows overlap by half, so the clip is cut at
    every window boundary into segments that are sorted once (as int16 when the clip is 16-bit PCM,
    which sorts faster) and each order statistic of a window is selected from its sorted segments.
    """
    y = np.asarray(y).reshape(-1)
    if y.dtype not in (np.float32, np.float64):
        y = y.astype(np.float64)
    if y.size == 0:
        raise ValueError("global_features: empty waveform")
    if len(y) < steps:
        y = np.resize(y, steps)
    start, end = window_bounds(len(y), steps)
    bounds = np.unique(np.concatenate([start, end]))
    width = int(np.diff(bounds).max())
    pcm = np.empty(len(y), np.int16)
    if _as_pcm16(y, pcm):  # numpy sorts int16 by radix ("stable"), 3x faster than float32
        segments = _segments(pcm, bounds, width, np.int16(np.iinfo(np.int16).max))
        ordered, scale = np.sort(segments, axis=1, kind="stable"), 1 / _PCM16
        # Sums of k / 32768 are exact in float64 in any order, so window means come from integer prefix sums.
        prefix = np.concatenate([[0], np.cumsum(pcm, dtype=np.int64)])
    else:
        ordered, scale = np.sort(_segments(y, bounds, width, y.dtype.type(np.inf)), axis=1), 1.0
        prefix = np.zeros(0, np.int64)
    out = np.empty((steps, len(GLOBAL_FEATURE_NAMES)), np.float64)
    _window_statistics(y, ordered, scale, bounds, start, end, np.asarray(PERCENTILES) / 100.0, prefix, out)
    return out.astype(np.float32)


_PCM16 = 32768.0  # 16-bit PCM decodes to k / 32768


@numba.njit(cache=True, nogil=True)
def _as_pcm16(y: np.ndarray, pcm: np.ndarray) -> bool:
    """Fill ``pcm`` with ``y * 32768`` if every sample is a 16-bit PCM value k / 32768; False otherwise."""
    block = 4096
    for first in range(0, len(y), block):  # an exit per block, not per sample: the inner loop vectorizes
        exact = True
        for i in range(first, min(first + block, len(y))):
            code = y[i] * _PCM16
            exact &= (-_PCM16 <= code) & (code < _PCM16) & (code == np.floor(code))
            pcm[i] = np.int16(code) if exact else 0
        if not exact:  # float audio (e.g. resampled) fails in its first block
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _segments(y: np.ndarray, bounds: np.ndarray, width: int, pad) -> np.ndarray:
    """Row j holds ``y[bounds[j]:bounds[j + 1]]``, padded with ``pad`` (a value sorting last) to ``width``."""
    rows = np.full((len(bounds) - 1, width), pad, dtype=y.dtype)
    for j in range(len(bounds) - 1):
        rows[j, :bounds[j + 1] - bounds[j]] = y[bounds[j]:bounds[j + 1]]
    return rows


@numba.njit(cache=True, nogil=True)
def _window_statistics(y, ordered, scale, bounds, start, end, quantiles, prefix, out) -> None:
    """``out[s]`` = the 12 statistics of window ``y[start[s]:end[s]]``; ``ordered`` holds the sorted
    segments between consecutive ``bounds`` (values times ``scale`` are the samples); ``prefix``, if not
    empty, holds the running integer sums of the 16-bit codes ``y * 32768``."""
    longest = np.max(end - start)
    merged = np.empty(longest, ordered.dtype)  # windows made of more than two segments (rare)
    scratch = np.empty(longest, ordered.dtype)
    ranks = np.empty(2 * len(quantiles) + 2, np.int64)  # below / above per quantile, then min and max
    weights = np.empty(len(quantiles))
    values = np.empty(len(ranks))
    first = 0
    for s in range(len(start)):
        a, b = start[s], end[s]
        m = b - a
        while bounds[first] < a:
            first += 1
        last = first
        while bounds[last] < b:
            last += 1
        if last - first > 2:
            filled = 0
            for j in range(first, last):
                filled = _merge(merged, filled, ordered[j], bounds[j + 1] - bounds[j], scratch)
        if len(prefix):
            mean = (prefix[b] - prefix[a]) / _PCM16 / m
        else:
            mean = _pairwise_sum(y, a, m, 0.0, False) / m  # numpy's summation order, hence its rounding
        out[s, 0] = mean
        out[s, 1] = np.sqrt(_pairwise_sum(y, a, m, mean, True) / m)
        for k in range(len(quantiles)):
            position = quantiles[k] * (m - 1)
            ranks[2 * k] = int(np.floor(position))
            ranks[2 * k + 1] = min(ranks[2 * k] + 1, m - 1)
            weights[k] = position - ranks[2 * k]
        ranks[-2], ranks[-1] = 0, m - 1
        for r in range(len(ranks)):
            if last - first > 2:
                value = merged[ranks[r]]
            elif last - first == 2:
                value = _kth_of_two(ordered[first], bounds[first + 1] - bounds[first], ordered[first + 1],
                                    bounds[first + 2] - bounds[first + 1], ranks[r])
            else:
                value = ordered[first, ranks[r]]
            values[r] = np.float64(value) * scale
        out[s, 2] = values[-1] - values[-2]
        for k in range(len(quantiles)):
            low, high = values[2 * k], values[2 * k + 1]
            out[s, 3 + k] = low + (high - low) * weights[k]


@numba.njit(cache=True, nogil=True)
def _kth_of_two(a, p, b, q, k):
    """The element of rank ``k`` (0-based) of sorted ``a[:p]`` and ``b[:q]`` together, by bisection."""
    lo, hi = max(0, k + 1 - q), min(k + 1, p)
    while lo < hi:  # the smallest count i taken from a with a[i] >= b[k - i]
        i = (lo + hi) // 2
        if a[i] < b[k - i]:
            lo = i + 1
        else:
            hi = i
    if lo == 0:
        return b[k]
    if lo == k + 1:
        return a[k]
    return max(a[lo - 1], b[k - lo])


@numba.njit(cache=True, nogil=True)
def _merge(merged, filled, row, n, scratch) -> int:
    """Merge sorted ``row[:n]`` into sorted ``merged[:filled]``; returns the new length."""
    i = j = k = 0
    while i < filled and j < n:
        if row[j] < merged[i]:
            scratch[k] = row[j]
            j += 1
        else:
            scratch[k] = merged[i]
            i += 1
        k += 1
    scratch[k:k + filled - i] = merged[i:filled]
    k += filled - i
    scratch[k:k + n - j] = row[j:n]
    k += n - j
    merged[:k] = scratch[:k]
    return k


@numba.njit(cache=True, nogil=True)
def _pairwise_sum(a, start, n, center, squared):
    """numpy's pairwise summation of ``a[start:start + n]`` as float64 (of ``(a - center) ** 2`` when
    ``squared``), bit for bit: halves (cut at a multiple of 8) down to blocks of at most 128, each summed
    with eight accumulators. With an explicit stack: numba cannot cache recursion."""
    lows, sizes, phase = np.zeros(64, np.int64), np.zeros(64, np.int64), np.zeros(64, np.int8)
    sums = np.zeros(64)
    top, done = 0, 0
    lows[0], sizes[0] = start, n
    while top >= 0:
        lo, size = lows[top], sizes[top]
        half = size // 2 - (size // 2) % 8
        if size <= 128:
            sums[done] = _block_sum(a, lo, size, center, squared)
            done += 1
            top -= 1
        elif phase[top] == 0:
            phase[top] = 1
            top += 1
            lows[top], sizes[top], phase[top] = lo, half, 0
        elif phase[top] == 1:
            phase[top] = 2
            top += 1
            lows[top], sizes[top], phase[top] = lo + half, size - half, 0
        else:
            done -= 1
            sums[done - 1] = sums[done - 1] + sums[done]
            top -= 1
    return sums[0]


@numba.njit(cache=True, nogil=True, inline="always")
def _term(a, i, center, squared):
    value = np.float64(a[i])
    return (value - center) ** 2 if squared else value


@numba.njit(cache=True, nogil=True)
def _block_sum(a, lo, n, center, squared):
    if n < 8:
        total = 0.0
        for i in range(lo, lo + n):
            total += _term(a, i, center, squared)
        return total
    r0, r1 = _term(a, lo, center, squared), _term(a, lo + 1, center, squared)
    r2, r3 = _term(a, lo + 2, center, squared), _term(a, lo + 3, center, squared)
    r4, r5 = _term(a, lo + 4, center, squared), _term(a, lo + 5, center, squared)
    r6, r7 = _term(a, lo + 6, center, squared), _term(a, lo + 7, center, squared)
    for i in range(lo + 8, lo + n - n % 8, 8):
        r0 += _term(a, i, center, squared)
        r1 += _term(a, i + 1, center, squared)
        r2 += _term(a, i + 2, center, squared)
        r3 += _term(a, i + 3, center, squared)
        r4 += _term(a, i + 4, center, squared)
        r5 += _term(a, i + 5, center, squared)
        r6 += _term(a, i + 6, center, squared)
        r7 += _term(a, i + 7, center, squared)
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(lo + n - n % 8, lo + n):
        total += _term(a, i, center, squared)
    return total


def length_feature(n_trimmed_samples: int, sample_rate: int, norm_seconds: float = 10.0) -> float:
    """Trimmed clip length as a fraction of ``norm_seconds`` (1.0 == a clip of that duration)."""
    return float(n_trimmed_samples) / (norm_seconds * sample_rate)
