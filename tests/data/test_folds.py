"""Stratified folds: coverage, determinism, stratification quality, folds.csv round trip."""
from __future__ import annotations

import numpy as np
import pytest

from freesound_tf.data.folds import load_folds, make_folds, save_folds
from freesound_tf.data.layout import DataValidationError


def multilabel_targets(n: int = 300, n_classes: int = 8, seed: int = 0) -> np.ndarray:
    """Imbalanced labels: one primary class (skewed frequencies) plus a second one for 30 %."""
    rng = np.random.default_rng(seed)
    weights = np.linspace(3, 1, n_classes)
    labels = np.zeros((n, n_classes), np.float32)
    labels[np.arange(n), rng.choice(n_classes, n, p=weights / weights.sum())] = 1
    pairs = rng.random(n) < 0.3
    labels[np.flatnonzero(pairs), rng.integers(0, n_classes, pairs.sum())] = 1
    return labels


def class_count_deviation(labels: np.ndarray, folds: np.ndarray, n_splits: int) -> float:
    """Largest |count of a class in a fold - its global count / n_splits|, over classes and folds."""
    expected = labels.sum(axis=0) / n_splits
    per_fold = np.stack([labels[folds == k].sum(axis=0) for k in range(n_splits)])
    return float(np.abs(per_fold - expected).max())


def test_multilabel_folds_cover_every_clip_once_and_are_balanced():
    labels = multilabel_targets()
    folds = make_folds(labels, n_splits=5, seed=1)
    assert folds.shape == (300,)
    assert set(folds.tolist()) == set(range(5))  # every clip in exactly one of 5 folds
    # Iterative stratification trades exact sizes for label balance, but only slightly.
    assert np.abs(np.bincount(folds) - 60).max() <= 3


def test_multilabel_folds_are_stratified():
    labels = multilabel_targets()
    folds = make_folds(labels, n_splits=5, seed=1)
    stratified = class_count_deviation(labels, folds, 5)
    # Iterative stratification keeps every class within ~1 clip of its share per fold.
    assert stratified <= 1.5
    # Reference: plain random equal-size folds are clearly worse on the same labels.
    rng = np.random.default_rng(0)
    random_dev = np.mean([class_count_deviation(labels, rng.permutation(np.arange(300) % 5), 5)
                          for _ in range(20)])
    assert random_dev > 2 * stratified


def test_folds_are_deterministic_per_seed():
    labels = multilabel_targets()
    np.testing.assert_array_equal(make_folds(labels, 5, seed=3), make_folds(labels, 5, seed=3))
    assert not np.array_equal(make_folds(labels, 5, seed=3), make_folds(labels, 5, seed=4))
    one_hot = np.eye(4, dtype=np.float32)[np.arange(40) % 4]
    np.testing.assert_array_equal(make_folds(one_hot, 5, 3, multilabel=False),
                                  make_folds(one_hot, 5, 3, multilabel=False))
    assert not np.array_equal(make_folds(one_hot, 5, 3, multilabel=False),
                              make_folds(one_hot, 5, 4, multilabel=False))


def test_single_label_folds_balance_each_class_exactly():
    rng = np.random.default_rng(0)
    classes = rng.permutation(np.repeat(np.arange(5), [20, 15, 10, 30, 25]))
    one_hot = np.eye(5, dtype=np.float32)[classes]
    folds = make_folds(one_hot, n_splits=5, seed=0, multilabel=False)
    counts = np.stack([np.bincount(classes[folds == k], minlength=5) for k in range(5)])
    # StratifiedKFold puts count / n_splits of every class in every fold.
    np.testing.assert_array_equal(counts, np.tile([4, 3, 2, 6, 5], (5, 1)))


def test_errors_name_the_fix():
    labels = multilabel_targets(n=4)
    with pytest.raises(ValueError, match="n_splits=5 exceeds the 4 clips; lower n_splits"):
        make_folds(labels, n_splits=5, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        make_folds(labels, n_splits=1, seed=0)
    rare = np.eye(3, dtype=np.float32)[[0] * 10 + [1] * 10 + [2] * 2]
    with pytest.raises(ValueError, match="class 2 has only 2 clip.*lower n_splits to 2"):
        make_folds(rare, n_splits=5, seed=0, multilabel=False)
    two_labels = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    with pytest.raises(ValueError, match="clip 0 has 2 labels.*multilabel=True"):
        make_folds(two_labels, n_splits=2, seed=0, multilabel=False)


def test_rare_classes_are_fine_for_multilabel():
    labels = np.eye(3, dtype=np.float32)[[0] * 10 + [1] * 10 + [2] * 2]
    folds = make_folds(labels, n_splits=5, seed=0)
    assert set(folds.tolist()) == set(range(5))


def test_save_and_load_round_trip(tmp_path):
    fnames = [f"clip{i}.wav" for i in range(6)]
    folds = np.array([0, 1, 2, 0, 1, 2])
    path = tmp_path / "sub" / "folds.csv"
    save_folds(path, fnames, folds)
    assert path.read_text().splitlines()[:2] == ["fname,fold", "clip0.wav,0"]
    table = load_folds(path)
    assert list(table.columns) == ["fname", "fold"]
    assert table["fname"].tolist() == fnames
    np.testing.assert_array_equal(table["fold"].to_numpy(), folds)
    assert table["fold"].dtype == np.int64


def test_load_folds_errors(tmp_path):
    path = tmp_path / "folds.csv"
    with pytest.raises(DataValidationError, match="not found"):
        load_folds(path)
    path.write_text("fname,split\na.wav,0\n")
    with pytest.raises(DataValidationError, match=r"folds.csv:1: header is \['fname', 'split'\]"):
        load_folds(path)
    path.write_text("fname,fold\na.wav,0\nb.wav,x\n")
    with pytest.raises(DataValidationError, match="folds.csv:3: fold 'x'"):
        load_folds(path)
    path.write_text("fname,fold\na.wav,0\na.wav,1\n")
    with pytest.raises(DataValidationError, match="folds.csv:3: duplicate fname 'a.wav'"):
        load_folds(path)
    with pytest.raises(ValueError, match="2 fnames but 3 fold ids"):
        save_folds(path, ["a", "b"], np.array([0, 1, 2]))


def recordings(n_clips: int, seed: int = 0) -> np.ndarray:
    """Recording id per clip: recordings of 1 to 12 clips (a few long ones dominate, as in real data)."""
    rng = np.random.default_rng(seed)
    sizes = np.minimum(rng.geometric(0.25, n_clips), 12)
    return np.repeat([f"rec{i}" for i in range(n_clips)], sizes)[:n_clips]


def test_group_folds_never_split_a_recording_and_stay_balanced():
    labels = multilabel_targets(n=300)
    groups = recordings(300)
    folds = make_folds(labels, n_splits=5, seed=1, groups=groups)
    assert set(folds) == set(range(5))
    for group in set(groups):
        assert len(set(folds[groups == group])) == 1, group
    # Whole recordings cost some balance, but far less than assigning them at random does.
    rng = np.random.default_rng(0)
    unique = sorted(set(groups))
    random_folds = dict(zip(unique, rng.integers(0, 5, len(unique))))
    random_deviation = class_count_deviation(labels, np.array([random_folds[g] for g in groups]), 5)
    assert class_count_deviation(labels, folds, 5) < 0.6 * random_deviation
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 12  # at most one recording's worth apart


def test_group_folds_are_deterministic_and_an_empty_group_is_a_clip_of_its_own():
    labels = multilabel_targets(n=60)
    groups = np.where(np.arange(60) < 40, recordings(60), "")
    a = make_folds(labels, 3, seed=5, groups=groups)
    np.testing.assert_array_equal(a, make_folds(labels, 3, seed=5, groups=list(groups)))
    assert not np.array_equal(a, make_folds(labels, 3, seed=6, groups=groups))
    assert len(set(a[40:])) == 3  # the 20 ungrouped clips spread over the folds


def test_single_label_group_folds():
    one_hot = np.eye(4, dtype=np.float32)[np.arange(80) % 4]
    groups = np.array([f"speaker{i % 20}" for i in range(80)])  # 4 clips of one class each
    folds = make_folds(one_hot, n_splits=4, seed=0, multilabel=False, groups=groups)
    assert all(len(set(folds[groups == g])) == 1 for g in set(groups))
    assert (np.stack([one_hot[folds == k].sum(0) for k in range(4)]) > 0).all()


def test_group_fold_errors_name_the_fix():
    labels = multilabel_targets(n=10)
    with pytest.raises(ValueError, match="only 2 group.*lower folds.n_splits"):
        make_folds(labels, 3, seed=0, groups=["a"] * 5 + ["b"] * 5)
    with pytest.raises(ValueError, match="9 group ids for 10 clips"):
        make_folds(labels, 3, seed=0, groups=["a"] * 9)
