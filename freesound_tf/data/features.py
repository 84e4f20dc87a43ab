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
    interpolation), 3.4x (float) to 7.4x (16-bit) faster than a sort per window: windows overlap by
    half, so the clip is cut at every window boundary into segments that are sorted once (as int16
    when the clip is 16-bit PCM, which sorts faster) and each order statistic of a window is selected
    from its sorted segments.
    Window means and stds come from per-segment sums (exact integers on 16-bit PCM, float64 otherwise),
    kept where their error bound shows they round to numpy's float32; elsewhere (0.3 % of the windows of
    real recordings) they are summed numpy's way.
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
    ordered, pcm_sums = _pcm16_segments(y, bounds, width)
    if len(ordered):  # numpy sorts int16 by radix ("stable"), 3x faster than float32
        ordered.sort(axis=1, kind="stable")  # in place: np.sort's copy would cost a third of the sort
        scale, float_sums = 1 / _PCM16, np.zeros((0, 3))
    else:
        ordered, float_sums = _float_segments(y, bounds, width)
        ordered.sort(axis=1)
        scale = 1.0
    out = np.empty((steps, len(GLOBAL_FEATURE_NAMES)), np.float64)
    _window_statistics(y, ordered, scale, bounds, start, end, np.asarray(PERCENTILES) / 100.0, pcm_sums,
                       float_sums, out)
    return out.astype(np.float32)


_PCM16 = 32768.0  # 16-bit PCM decodes to k / 32768
_PCM16_F32, _ZERO_F32 = np.float32(_PCM16), np.float32(0)


@numba.njit(cache=True, nogil=True)
def _pcm16_segments(y: np.ndarray, bounds: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """If every sample is a 16-bit PCM value k / 32768: row j of the first array holds the codes k of
    ``y[bounds[j]:bounds[j + 1]]`` padded with 32767 (sorting last) to ``width``, row j of the second
    their sum and sum of squares (exact in int64). Else two empty arrays."""
    codes = np.full((len(bounds) - 1, width), np.int16(32767))
    sums = np.zeros((len(bounds) - 1, 2), np.int64)
    for j in range(len(bounds) - 1):  # an exit per segment, not per sample: the inner loop vectorizes
        inexact, total, squares = 0, np.int64(0), np.int64(0)
        segment, row = y[bounds[j]:bounds[j + 1]], codes[j]  # 1-D views, so the loop vectorizes
        for i in range(len(segment)):
            code = segment[i] * _PCM16_F32  # exact: a power of two (in y's own precision, which keeps it vectorized)
            in_range = (code >= -_PCM16_F32) & (code < _PCM16_F32)  # False for NaN
            k = np.int32(code if in_range else _ZERO_F32)  # a select, not a branch
            inexact += np.int32(not in_range) | np.int32(k != code)
            row[i] = k
            total += k
            squares += np.int64(k * k)
        if inexact:  # float audio (e.g. resampled) fails in its first segment
            return np.empty((0, 0), np.int16), np.empty((0, 2), np.int64)
        sums[j, 0], sums[j, 1] = total, squares
    return codes, sums


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})  # reassociated sums vectorize; their error is bounded
def _float_segments(y: np.ndarray, bounds: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row j of the first array holds ``y[bounds[j]:bounds[j + 1]]`` padded with inf (sorting last) to
    ``width``; row j of the second the float64 sums of its samples, their squares and their magnitudes."""
    rows = np.full((len(bounds) - 1, width), y.dtype.type(np.inf))
    sums = np.zeros((len(bounds) - 1, 3))
    for j in range(len(bounds) - 1):
        segment, row = y[bounds[j]:bounds[j + 1]], rows[j]
        total = squares = magnitudes = 0.0
        for i in range(len(segment)):
            row[i] = segment[i]
            value = np.float64(segment[i])
            total += value
            squares += value * value
            magnitudes += abs(value)
        sums[j, 0], sums[j, 1], sums[j, 2] = total, squares, magnitudes
    return rows, sums


@numba.njit(cache=True, nogil=True)
def _window_statistics(y, ordered, scale, bounds, start, end, quantiles, pcm_sums, float_sums, out) -> None:
    """``out[s]`` = the 12 statistics of window ``y[start[s]:end[s]]``; ``ordered`` holds the sorted
    segments between consecutive ``bounds`` (values times ``scale`` are the samples); per segment, either
    ``pcm_sums`` holds the integer sums of the 16-bit codes ``y * 32768`` and of their squares, or
    ``float_sums`` those of ``_float_segments``. Means and stds are numpy's: where a fast one could
    round to another float32 than numpy's, it is summed numpy's way."""
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
        if len(pcm_sums):
            # Sums of k / 32768 are exact in float64 in any order, so numpy's mean is the exact one, rounded.
            total, squares = pcm_sums[first:last, 0].sum(), pcm_sums[first:last, 1].sum()
            mean, numpy_mean = total / _PCM16 / m, True
            std = _exact_std(total, squares, m)
        else:
            mean, std = _float_moments(float_sums[first:last].sum(axis=0), m)
            numpy_mean = np.isnan(mean)
            if numpy_mean:
                mean = _pairwise_sum(y, a, m, 0.0, False) / m  # numpy's summation order, hence its rounding
        if std < 0:
            center = mean if numpy_mean else _pairwise_sum(y, a, m, 0.0, False) / m
            std = np.sqrt(_pairwise_sum(y, a, m, center, True) / m)
        out[s, 0] = mean
        out[s, 1] = std
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


_EXACT_STD_MAX_WINDOW = 1 << 16  # m * sum(k^2) < 2^63 for every window up to this length
_FLOAT32_SAFE_MARGIN = 1e-12  # relative; numpy's float64 std is within ~1e-15 of the exact one


@numba.njit(cache=True, nogil=True)
def _exact_std(total, squares, m):
    """The population std of ``m`` codes k / 32768 from the exact sums of k and k^2, or -1.0 when numpy's
    pairwise float64 result could round to another float32 (it lies within ``_FLOAT32_SAFE_MARGIN`` of
    the exact value, so the two agree once every value in that band rounds to the same float32)."""
    if m > _EXACT_STD_MAX_WINDOW:
        return -1.0
    std = np.sqrt(np.float64(m * squares - total * total)) / (m * _PCM16)
    if np.float32(std * (1 - _FLOAT32_SAFE_MARGIN)) != np.float32(std * (1 + _FLOAT32_SAFE_MARGIN)):
        return -1.0
    return std


_EPS = np.finfo(np.float64).eps


@numba.njit(cache=True, nogil=True)
def _float_moments(sums, m):
    """(mean, std) of a window of ``m`` samples from its float64 (sum, sum of squares, sum of magnitudes),
    each replaced by NaN (mean) or -1.0 (std) when numpy's pairwise result could round to another float32.

    Bounds: any order of float64 summation errs by at most (m - 1) eps/2 times the sum of magnitudes, and
    numpy's pairwise sums by less; numpy's variance, centred on its rounded mean, differs from the true one
    by that mean's error squared. NaN and inf give NaN bounds, hence numpy's way."""
    total, squares, magnitudes = sums[0], sums[1], sums[2]
    mean = total / m
    mean_error = (m + 4) * _EPS * magnitudes / m
    if np.float32(mean - mean_error) != np.float32(mean + mean_error):
        mean = np.nan
    variance = squares / m - (total / m) ** 2
    variance_error = (m + 40) * _EPS * squares / m + 2 * abs(total / m) * mean_error + 2 * mean_error ** 2
    low = np.sqrt(max(variance - variance_error, 0.0)) * (1 - 4 * _EPS)
    high = np.sqrt(variance + variance_error) * (1 + 4 * _EPS)
    if not np.float32(low) == np.float32(high):
        return mean, -1.0
    return mean, np.sqrt(max(variance, 0.0))


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
