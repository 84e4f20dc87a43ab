"""Tests for freesound_tf.metrics against hand values, a plain loop and sklearn."""
import numpy as np
import pytest
from sklearn.metrics import label_ranking_average_precision_score

keras = pytest.importorskip("keras")

from freesound_tf.metrics import (  # noqa: E402
    LwlrapMetric, lwlrap, lwlrap_at_label_mix, lwlrap_interval, map_at_k, per_class_lwlrap, top_k_labels)


def lwlrap_by_definition(y_true, y_score):
    """(overall, {class: [pair precisions]}) straight from the definition, one pair at a time."""
    by_class = {}
    for labels, scores in zip(y_true, y_score):
        for label in np.flatnonzero(labels):
            rank = sum(1 for s in scores if s >= scores[label])
            hits = sum(1 for j in np.flatnonzero(labels) if scores[j] >= scores[label])
            by_class.setdefault(int(label), []).append(hits / rank)
    pairs = [p for ps in by_class.values() for p in ps]
    return sum(pairs) / len(pairs), by_class


# Hand-computed cases (rank = #scores >= the label's score, hits = #true labels among them):
HAND_CASES = [
    # scores 0.9 0.1 0.5 0.3, true {2}: rank 2 (0.9, 0.5), hits 1 -> 1/2
    ([[0, 0, 1, 0]], [[0.9, 0.1, 0.5, 0.3]], 1 / 2),
    # true {0, 3}: class 0 rank 1 hits 1 -> 1; class 3 rank 3 (0.9, 0.5, 0.3) hits 2 -> 2/3;
    # mean over the 2 pairs = 5/6
    ([[1, 0, 0, 1]], [[0.9, 0.1, 0.5, 0.3]], 5 / 6),
    # tie with a false label: class 0 ties class 1 -> rank 2, hits 1 -> 1/2
    ([[1, 0, 0]], [[0.5, 0.5, 0.2]], 1 / 2),
    # tie between two true labels: each rank 2, hits 2 -> 1
    ([[1, 1, 0]], [[0.5, 0.5, 0.2]], 1.0),
    # label weighting: the 2-label clip gives pairs 1 and 2/3, the 1-label clip 1/2;
    # (1 + 2/3 + 1/2) / 3 = 13/18 (a per-clip mean would give 2/3)
    ([[1, 0, 0, 1], [0, 0, 1, 0]], [[0.9, 0.1, 0.5, 0.3], [0.9, 0.1, 0.5, 0.3]], 13 / 18),
]


@pytest.mark.parametrize("y_true, y_score, expected", HAND_CASES)
def test_lwlrap_hand_cases(y_true, y_score, expected):
    assert lwlrap(np.array(y_true), np.array(y_score)) == pytest.approx(expected, abs=1e-12)
    assert lwlrap_by_definition(np.array(y_true), np.array(y_score))[0] == pytest.approx(expected)


def test_per_class_hand_case():
    y_true, y_score, _ = HAND_CASES[-1]
    per_class, weights = per_class_lwlrap(np.array(y_true), np.array(y_score))
    # class 0: [1], class 1: no positive, class 2: [1/2], class 3: [2/3]; 3 pairs in all
    np.testing.assert_allclose(per_class, [1.0, 0.0, 0.5, 2 / 3])
    np.testing.assert_allclose(weights, [1 / 3, 0.0, 1 / 3, 1 / 3])


def random_case(seed, n_clips=60, n_classes=7, integer_scores=False):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((n_clips, n_classes)) < 0.3).astype(int)
    y_true[:3] = 0          # clips without labels
    y_true[3] = 1           # a clip with every label
    if integer_scores:       # many ties
        y_score = rng.integers(0, 4, (n_clips, n_classes)).astype(float)
    else:
        y_score = rng.random((n_clips, n_classes))
    return y_true, y_score


@pytest.mark.parametrize("integer_scores", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lwlrap_matches_sklearn_and_loop(seed, integer_scores):
    y_true, y_score = random_case(seed, integer_scores=integer_scores)
    value = lwlrap(y_true, y_score)
    # sklearn scores label-less clips 1.0, but their weight (label count) is 0.
    sklearn_all = label_ranking_average_precision_score(y_true, y_score,
                                                        sample_weight=y_true.sum(1))
    labelled = y_true.sum(1) > 0
    sklearn_labelled = label_ranking_average_precision_score(
        y_true[labelled], y_score[labelled], sample_weight=y_true[labelled].sum(1))
    assert value == pytest.approx(sklearn_all, abs=1e-12)
    assert value == pytest.approx(sklearn_labelled, abs=1e-12)
    assert value == pytest.approx(lwlrap_by_definition(y_true, y_score)[0], abs=1e-12)


@pytest.mark.parametrize("integer_scores", [False, True])
def test_per_class_matches_loop_and_sums_to_overall(integer_scores):
    y_true, y_score = random_case(5, integer_scores=integer_scores)
    per_class, weights = per_class_lwlrap(y_true, y_score)
    _, by_class = lwlrap_by_definition(y_true, y_score)
    n_pairs = y_true.sum()
    for label, precisions in by_class.items():
        assert per_class[label] == pytest.approx(np.mean(precisions))
        assert weights[label] == pytest.approx(len(precisions) / n_pairs)
    assert weights.sum() == pytest.approx(1.0)
    assert (per_class * weights).sum() == pytest.approx(lwlrap(y_true, y_score), abs=1e-12)


def test_perfect_and_worst_ranking():
    y_true, _ = random_case(3)
    assert lwlrap(y_true, y_true + 0.1 * np.random.default_rng(0).random(y_true.shape)) == 1.0
    # All scores tied: each pair's precision is (#labels) / C.
    y = np.array([[1, 1, 0, 0, 0]])
    assert lwlrap(y, np.zeros((1, 5))) == pytest.approx(2 / 5)


@pytest.mark.parametrize("y_true, y_score, message", [
    (np.ones((2, 3)), np.ones((2, 4)), "same shape"),
    (np.full((2, 3), 0.5), np.ones((2, 3)), "0/1 labels"),
    (np.ones((2, 3)), np.array([[0, 1, 2], [0, np.nan, 1]]), "row 1"),
    (np.zeros((2, 3)), np.ones((2, 3)), "no positive"),
])
def test_lwlrap_rejects_bad_input(y_true, y_score, message):
    with pytest.raises(ValueError, match=message):
        lwlrap(y_true, y_score)


def stream(metric, y_true, y_score, cuts, sample_weight=None):
    for start, stop in zip([0, *cuts], [*cuts, len(y_true)]):
        weight = None if sample_weight is None else sample_weight[start:stop]
        metric.update_state(y_true[start:stop], y_score[start:stop].astype("float32"), weight)
    return float(metric.result())


@pytest.mark.parametrize("cuts", [[], [1], [7, 8, 30], [13, 26, 39, 52]])
@pytest.mark.parametrize("integer_scores", [False, True])
def test_streaming_equals_numpy(cuts, integer_scores):
    y_true, y_score = random_case(7, integer_scores=integer_scores)
    # float32 scores: the metric sees float32 predictions, so compare on the same ties.
    y_score = y_score.astype("float32")
    metric = LwlrapMetric(num_classes=y_true.shape[1])
    assert stream(metric, y_true, y_score, cuts) == pytest.approx(lwlrap(y_true, y_score),
                                                                  rel=1e-6)
    per_class, weights = (np.asarray(t) for t in metric.per_class_result())
    expected_per_class, expected_weights = per_class_lwlrap(y_true, y_score)
    np.testing.assert_allclose(per_class, expected_per_class, rtol=1e-6)
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-6)


def test_streaming_reset_and_sample_weight():
    y_true, y_score = random_case(8)
    metric = LwlrapMetric()
    stream(metric, y_true, y_score, [10])
    metric.reset_state()
    assert float(metric.result()) == 0.0
    # An integer clip weight counts like repeating the clip.
    weights = np.random.default_rng(1).integers(0, 3, len(y_true))
    expected = lwlrap(np.repeat(y_true, weights, axis=0),
                      np.repeat(y_score.astype("float32"), weights, axis=0))
    assert stream(metric, y_true, y_score, [10, 40], weights) == pytest.approx(expected, rel=1e-6)


def test_streaming_rounds_soft_targets_and_needs_num_classes_for_per_class():
    y_true, y_score = random_case(9)
    metric = LwlrapMetric()
    soft = y_true * 0.98 + 0.01
    assert stream(metric, soft, y_score, [20]) == pytest.approx(
        lwlrap(y_true, y_score.astype("float32")), rel=1e-6)
    with pytest.raises(ValueError, match="num_classes"):
        metric.per_class_result()


def test_metric_serialization_round_trip():
    metric = LwlrapMetric(num_classes=5, name="val_rank")
    restored = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert isinstance(restored, LwlrapMetric)
    assert restored.get_config() == metric.get_config()


@pytest.mark.parametrize("jit_compile", [False, True])
def test_metric_inside_fit_matches_numpy_on_predictions(jit_compile):
    rng = np.random.default_rng(0)
    x_train, x_val = rng.normal(size=(64, 6)), rng.normal(size=(37, 6))
    y_train = (rng.random((64, 5)) < 0.3).astype("float32")
    y_val = (rng.random((37, 5)) < 0.3).astype("float32")
    y_val[0] = 0  # a clip without labels
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=[LwlrapMetric()],
                  jit_compile=jit_compile)
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), batch_size=16,
                        epochs=2, verbose=0)
    predictions = model.predict(x_val, batch_size=16, verbose=0)
    assert history.history["val_lwlrap"][-1] == pytest.approx(lwlrap(y_val, predictions),
                                                              rel=1e-6)


# MAP@3 hand cases: scores 0.1 0.5 0.3 0.2 rank the classes 1, 2, 3, 0.
MAP_SCORES = np.array([[0.1, 0.5, 0.3, 0.2]] * 4)


def test_map_at_k_hand_cases():
    # labels 1, 2, 3, 0 sit at ranks 1, 2, 3 and outside the top 3: (1 + 1/2 + 1/3 + 0) / 4
    labels = np.array([1, 2, 3, 0])
    assert map_at_k(labels, MAP_SCORES) == pytest.approx(11 / 24)
    assert map_at_k(np.eye(4, dtype=int)[labels], MAP_SCORES) == pytest.approx(11 / 24)
    assert map_at_k(labels, MAP_SCORES, k=1) == pytest.approx(1 / 4)
    # A tie is ordered by class index: class 1 ties class 0 and comes second.
    assert map_at_k(np.array([1]), np.array([[0.4, 0.4, 0.1]])) == pytest.approx(1 / 2)


def test_top_k_labels_agree_with_map_at_k():
    names = ["dog", "cat", "bird", "rain"]
    rows = top_k_labels(MAP_SCORES[:1], names)
    assert rows == ["cat bird rain"]
    assert top_k_labels(np.array([[0.4, 0.4, 0.1, 0.0]]), names, k=2) == ["dog cat"]


@pytest.mark.parametrize("labels, scores, k, message", [
    (np.array([[1, 1, 0, 0]]), MAP_SCORES[:1], 3, "exactly one 1"),
    (np.array([1.0]), MAP_SCORES[:1], 3, "integer class indices"),
    (np.array([1]), MAP_SCORES[:1], 5, "k=5"),
])
def test_map_at_k_rejects_bad_input(labels, scores, k, message):
    with pytest.raises(ValueError, match=message):
        map_at_k(labels, scores, k=k)


def test_top_k_labels_rejects_wrong_name_count():
    with pytest.raises(ValueError, match="3 class names for 4"):
        top_k_labels(MAP_SCORES, ["a", "b", "c"])


def test_lwlrap_at_label_mix_hand_case_and_own_mix():
    y_true, y_score, expected = (np.array(a) for a in HAND_CASES[-1])
    # per class (definition above): class 0 -> 1, class 2 -> 1/2, class 3 -> 2/3; class 1 has no positive
    assert lwlrap_at_label_mix(y_true, y_score, y_true.sum(axis=0)) == pytest.approx(expected)
    # another split's mix: 3 labels of class 0, 1 of class 2, none of class 3, 5 of class 1 (left out here)
    assert lwlrap_at_label_mix(y_true, y_score, [3, 5, 1, 0]) == pytest.approx((3 * 1 + 1 * 0.5) / 4)
    with pytest.raises(ValueError, match="no weight"):
        lwlrap_at_label_mix(y_true, y_score, [0, 5, 0, 0])
    with pytest.raises(ValueError, match="4 non-negative"):
        lwlrap_at_label_mix(y_true, y_score, [1, 1])


def _random_multilabel(rng, clips, classes=6):
    y_true = (rng.random((clips, classes)) < 0.25).astype(np.int64)
    y_true[np.arange(clips), rng.integers(0, classes, clips)] = 1
    return y_true, np.round(rng.random((clips, classes)), 1)  # rounded: many ties


def test_lwlrap_interval_is_the_percentiles_of_lwlrap_over_resampled_groups():
    rng = np.random.default_rng(5)
    y_true, y_score = _random_multilabel(rng, 60)
    groups = rng.choice(["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"], 60)
    names = np.unique(groups)
    draws = np.random.default_rng(3).integers(0, len(names), size=(300, len(names)))
    values = []
    for draw in draws:  # the slow way: gather the drawn recordings' clips and score them
        rows = np.concatenate([np.flatnonzero(groups == names[g]) for g in draw])
        values.append(lwlrap(y_true[rows], y_score[rows]))
    expected = np.percentile(values, [5, 95])
    got = lwlrap_interval(y_true, y_score, groups, confidence=0.9, resamples=300, seed=3)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got[0] < lwlrap(y_true, y_score) < got[1]


def test_lwlrap_interval_resamples_recordings_not_clips():
    rng = np.random.default_rng(6)
    y_true, y_score = _random_multilabel(rng, 40)
    alone = lwlrap_interval(y_true, y_score)
    copies = np.repeat(np.arange(40), 4)  # every recording cut into 4 identical clips
    recordings = [f"rec{i:02d}" for i in copies]  # sorted as the clips, so the draws pick the same recordings
    assert lwlrap_interval(y_true[copies], y_score[copies], groups=recordings) == pytest.approx(alone)
    low, high = lwlrap_interval(y_true[copies], y_score[copies])  # as if the 160 clips were independent
    assert high - low < 0.7 * (alone[1] - alone[0])
    assert lwlrap_interval(y_true, y_true.astype(float)) == (1.0, 1.0)
    with pytest.raises(ValueError, match="one entry per clip"):
        lwlrap_interval(y_true, y_score, groups=["a"] * 39)
