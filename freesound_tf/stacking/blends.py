"""Baseline blends of member scores ``(members, clips, classes)`` -> ``(clips, classes)``."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import rankdata

# Scores are probabilities; the floor keeps log(0) out of the geometric mean.
GEOMETRIC_FLOOR = 1e-7


def mean_blend(scores: np.ndarray) -> np.ndarray:
    return np.mean(scores, axis=0)


def weighted_mean_blend(scores: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """sum_m w_m s_m / sum_m w_m."""
    w = np.asarray(weights, np.float64)
    if w.shape != (scores.shape[0],) or (w <= 0).any():
        raise ValueError(f"weighted_mean_blend: need one positive weight per member ({scores.shape[0]}), got {weights}")
    return np.tensordot(w / w.sum(), scores, axes=1)


def geometric_mean_blend(scores: np.ndarray) -> np.ndarray:
    return np.exp(np.mean(np.log(np.maximum(scores, GEOMETRIC_FLOOR)), axis=0))


def rank_mean_blend(scores: np.ndarray) -> np.ndarray:
    """Mean over members of each class's ranks over clips, scaled to 0..1 (ties share their mean rank)."""
    n_clips = scores.shape[1]
    ranks = rankdata(scores, method="average", axis=1)
    return np.mean((ranks - 1) / max(n_clips - 1, 1), axis=0)


def blends(weights: Sequence[float]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Every baseline blend by its table name, the weighted mean bound to ``weights``."""
    return {"mean": mean_blend, "weighted_mean": lambda s: weighted_mean_blend(s, weights),
            "geometric_mean": geometric_mean_blend, "rank_mean": rank_mean_blend}
