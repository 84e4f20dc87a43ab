"""Evaluation metrics: lwlrap (FAT2019), MAP@k (FAT2018) and a streaming Keras lwlrap.

lwlrap (label-weighted label-ranking average precision) averages, over every
(clip, true label) pair, the precision of the clip's label ranking at that label:

    rank(l) = #{j : s_j >= s_l}             (all labels scored at least as high)
    hits(l) = #{j true : s_j >= s_l}        (true labels among them)
    precision(l) = hits(l) / rank(l)

Ties count as "ranked at or above" for both counts, exactly as sklearn's
``label_ranking_average_precision_score`` does, so that lwlrap equals that function
with ``sample_weight = y_true.sum(1)``. Clips without labels have no pairs and so
carry no weight (sklearn scores them 1.0 but their weight is 0).
"""
from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops
from scipy.stats import rankdata


def _check_multilabel(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must both be "
                         "(clips, classes) with the same shape")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must hold only 0/1 labels; round soft (mixup/smoothed) targets "
                         "before scoring")
    if not np.isfinite(y_score).all():
        bad_row = int(np.nonzero(~np.isfinite(y_score).all(axis=1))[0][0])
        raise ValueError(f"y_score has NaN/inf values (first in row {bad_row}); check the model "
                         "predictions")
    return y_true.astype(bool), y_score


def _pair_precisions(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Precision at every true label (0 where the label is false), shape (clips, classes)."""
    # rankdata(-s, "max") = #{j: s_j >= s_l}, ties counted as ranked above.
    rank = rankdata(-y_score, method="max", axis=1)
    # False labels pushed to -inf can never be >= a (finite) true label's score.
    true_only = np.where(y_true, y_score, -np.inf)
    hits = rankdata(-true_only, method="max", axis=1)
    return np.where(y_true, hits / rank, 0.0)


def per_class_lwlrap(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class lwlrap and class weights (each class's share of all positive labels).

    ``lwlrap == sum(per_class * weights)``. A class with no positive label gets
    lwlrap 0 and weight 0.
    """
    y_true, y_score = _check_multilabel(y_true, y_score)
    precisions = _pair_precisions(y_true, y_score)
    positives = y_true.sum(axis=0)
    total = positives.sum()
    if total == 0:
        raise ValueError("y_true has no positive label; lwlrap is undefined")
    per_class = np.divide(precisions.sum(axis=0), positives,
                          out=np.zeros(positives.shape), where=positives > 0)
    return per_class, positives / total


def lwlrap_at_label_mix(y_true: np.ndarray, y_score: np.ndarray, label_counts: np.ndarray) -> float:
    """lwlrap of these scores as if the classes' shares of the positive labels were ``label_counts``
    (e.g. another split's positives per class): per-class lwlrap weighted by them.

    lwlrap weights each class by its share of the labels, so two splits with different label mixes
    score the same model differently; ``lwlrap_at_label_mix(y_oof, oof, y_test.sum(0))`` is the OOF
    figure at the test split's mix, which tells how much of an OOF-test gap is the mix. Classes
    without a positive label here are left out (their per-class lwlrap is undefined).
    """
    per_class, own_weights = per_class_lwlrap(y_true, y_score)
    counts = np.asarray(label_counts, dtype=np.float64).reshape(-1)
    if counts.shape != per_class.shape or (counts < 0).any():
        raise ValueError(f"label_counts must hold {per_class.size} non-negative values, got shape {counts.shape}")
    counts = np.where(own_weights > 0, counts, 0.0)
    if counts.sum() == 0:
        raise ValueError("label_counts gives no weight to any class with a positive label here")
    return float((per_class * counts).sum() / counts.sum())


def lwlrap_interval(y_true: np.ndarray, y_score: np.ndarray, groups: Sequence[str] | None = None,
                    confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of lwlrap, resampling ``groups`` (e.g. each clip's recording).

    Clips cut from one recording succeed or fail together, so resampling clips would understate how
    much the score depends on which recordings happened to be in the test set. Each of ``resamples``
    draws takes as many groups as there are, with replacement, with all their clips (``groups=None``:
    every clip is its own group). A clip's pair precisions depend on its own scores only, so each
    draw's lwlrap is exact from per-group sums of precisions and label counts.
    """
    y_true, y_score = _check_multilabel(y_true, y_score)
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError(f"need 0 < confidence < 1 and resamples >= 1, got {confidence}, {resamples}")
    keys = np.arange(len(y_true)) if groups is None else np.asarray(groups)
    if len(keys) != len(y_true):
        raise ValueError(f"groups must have one entry per clip: {len(keys)} for {len(y_true)} clips")
    _, group_of = np.unique(keys, return_inverse=True)
    n_groups = group_of.max() + 1
    precision_sums = np.bincount(group_of, _pair_precisions(y_true, y_score).sum(axis=1), n_groups)
    label_counts = np.bincount(group_of, y_true.sum(axis=1), n_groups)
    draws = np.random.default_rng(seed).integers(0, n_groups, size=(resamples, n_groups))
    pairs = label_counts[draws].sum(axis=1)
    values = np.divide(precision_sums[draws].sum(axis=1), pairs, out=np.full(resamples, np.nan), where=pairs > 0)
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])  # draws without any label have no lwlrap
    return float(low), float(high)


def lwlrap(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Label-weighted label-ranking average precision (FAT2019 metric), tie-aware as sklearn."""
    y_true, y_score = _check_multilabel(y_true, y_score)
    n_pairs = y_true.sum()
    if n_pairs == 0:
        raise ValueError("y_true has no positive label; lwlrap is undefined")
    return float(_pair_precisions(y_true, y_score).sum() / n_pairs)


def clip_lrap(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Label-ranking average precision of each clip (mean precision over its true labels), tie-aware.

    NaN for a clip without labels. ``lwlrap`` is the mean of these weighted by label count.
    """
    y_true, y_score = _check_multilabel(y_true, y_score)
    n_labels = y_true.sum(axis=1)
    with np.errstate(invalid="ignore"):
        return _pair_precisions(y_true, y_score).sum(axis=1) / n_labels


def f2_per_clip(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """F2 score of each clip's predicted label set (scores above ``threshold``) against its labels.

    F2 = 5 TP / (5 TP + 4 FN + FP): recall weighs four times as much as precision. A clip with no
    labels and no predicted label scores 1 (nothing missed, nothing wrong).
    """
    y_true, y_score = _check_multilabel(y_true, y_score)
    predicted = y_score > threshold
    tp = (y_true & predicted).sum(axis=1)
    fn = (y_true & ~predicted).sum(axis=1)
    fp = (~y_true & predicted).sum(axis=1)
    denominator = 5 * tp + 4 * fn + fp
    return np.divide(5.0 * tp, denominator, out=np.ones(len(tp)), where=denominator > 0)


def _top_k_indices(y_score: np.ndarray, k: int) -> np.ndarray:
    y_score = np.asarray(y_score)
    if y_score.ndim != 2:
        raise ValueError(f"y_score must be (clips, classes), got shape {y_score.shape}")
    if not 1 <= k <= y_score.shape[1]:
        raise ValueError(f"k={k} must be between 1 and the number of classes "
                         f"({y_score.shape[1]})")
    # Stable sort: tied scores keep class order, so MAP@k scores exactly what top_k_labels submits.
    return np.argsort(-y_score, axis=1, kind="stable")[:, :k]


def map_at_k(y_true_idx_or_onehot: np.ndarray, y_score: np.ndarray, k: int = 3) -> float:
    """Mean average precision at k for single-label clips (FAT2018 MAP@3).

    A clip scores 1/rank when its label is among its k best-scored classes, else 0.
    Labels are class indices (clips,) or one-hot rows (clips, classes).
    Tied scores are ordered by class index, as in ``top_k_labels``.
    """
    labels = np.asarray(y_true_idx_or_onehot)
    y_score = np.asarray(y_score)
    top = _top_k_indices(y_score, k)
    if labels.ndim == 2:
        if labels.shape != y_score.shape or not (np.isin(labels, (0, 1)).all()
                                                  and (labels.sum(axis=1) == 1).all()):
            raise ValueError("one-hot y_true must match y_score's shape with exactly one 1 per "
                             "row; MAP@k is for single-label clips")
        labels = labels.argmax(axis=1)
    if labels.shape != (y_score.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"y_true must be integer class indices of shape ({y_score.shape[0]},) "
                         f"or one-hot rows, got {labels.dtype} {labels.shape}")
    hit = top == labels[:, None]
    return float((hit / np.arange(1, k + 1)).sum(axis=1).mean())


def top_k_labels(y_score: np.ndarray, class_names: Sequence[str], k: int = 3) -> list[str]:
    """Space-separated names of the k best-scored classes per clip (FAT2018 submission rows)."""
    if len(class_names) != np.shape(y_score)[-1]:
        raise ValueError(f"{len(class_names)} class names for {np.shape(y_score)[-1]} score "
                         "columns; pass one name per class")
    top = _top_k_indices(y_score, k)
    return [" ".join(class_names[i] for i in row) for row in top]


@keras.saving.register_keras_serializable(package="freesound_tf")
class LwlrapMetric(keras.metrics.Metric):
    """Exact lwlrap over everything seen since the last reset, streamed batch by batch.

    lwlrap is a mean over (clip, true label) pairs and each pair's precision depends only
    on its own clip, so summing pair precisions and counting pairs per batch gives the
    exact value over the whole set. Accumulators are float64 so long epochs do not drift.
    Targets are rounded at 0.5 (soft mixup/smoothed targets become hard labels).
    With ``num_classes`` set it also tracks per-class sums (see ``per_class_result``).
    """

    def __init__(self, num_classes: int | None = None, name: str = "lwlrap", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = num_classes
        self.precision_sum = self.add_variable(shape=(), initializer="zeros", dtype="float64",
                                               name="precision_sum")
        self.pair_count = self.add_variable(shape=(), initializer="zeros", dtype="float64",
                                            name="pair_count")
        if num_classes is not None:
            self.class_precision_sum = self.add_variable(
                shape=(num_classes,), initializer="zeros", dtype="float64",
                name="class_precision_sum")
            self.class_pair_count = self.add_variable(
                shape=(num_classes,), initializer="zeros", dtype="float64",
                name="class_pair_count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.cast(ops.cast(y_true, "float32") > 0.5, "float64")
        scores = ops.cast(y_pred, "float64")
        # at_or_above[b, l, j] = s_j >= s_l, an O(B*C^2) compare that is cheap for C ~ 80.
        at_or_above = ops.cast(scores[:, None, :] >= scores[:, :, None], "float64")
        rank = ops.sum(at_or_above, axis=-1)
        hits = ops.sum(at_or_above * labels[:, None, :], axis=-1)
        precisions = labels * hits / rank
        if sample_weight is not None:
            weight = ops.reshape(ops.cast(sample_weight, "float64"), (-1, 1))
            precisions = precisions * weight
            labels = labels * weight
        self.precision_sum.assign_add(ops.sum(precisions))
        self.pair_count.assign_add(ops.sum(labels))
        if self.num_classes is not None:
            self.class_precision_sum.assign_add(ops.sum(precisions, axis=0))
            self.class_pair_count.assign_add(ops.sum(labels, axis=0))

    def result(self):
        return ops.cast(ops.divide_no_nan(self.precision_sum, self.pair_count), self.dtype)

    def per_class_result(self):
        """(per-class lwlrap, class weights) so far; needs ``num_classes``."""
        if self.num_classes is None:
            raise ValueError("per-class lwlrap needs LwlrapMetric(num_classes=...)")
        per_class = ops.divide_no_nan(self.class_precision_sum, self.class_pair_count)
        weights = ops.divide_no_nan(self.class_pair_count, ops.sum(self.class_pair_count))
        return ops.cast(per_class, self.dtype), ops.cast(weights, self.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes}
