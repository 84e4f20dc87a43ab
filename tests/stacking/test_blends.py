"""Baseline blends against values worked out by hand."""
import numpy as np
import pytest

from freesound_tf.stacking.blends import (
    blends, geometric_mean_blend, mean_blend, rank_mean_blend, weighted_mean_blend,
)

# 2 members x 3 clips x 2 classes.
SCORES = np.array([
    [[0.2, 0.9], [0.4, 0.1], [0.8, 0.5]],
    [[0.8, 0.1], [0.4, 0.4], [0.2, 0.5]],
])


def test_mean_and_weighted_mean():
    np.testing.assert_allclose(mean_blend(SCORES), [[0.5, 0.5], [0.4, 0.25], [0.5, 0.5]])
    # weights 3:1 -> (3a + b) / 4
    np.testing.assert_allclose(weighted_mean_blend(SCORES, [3.0, 1.0]), [[0.35, 0.7], [0.4, 0.175], [0.65, 0.5]])
    with pytest.raises(ValueError, match="one positive weight per member"):
        weighted_mean_blend(SCORES, [1.0])


def test_geometric_mean():
    np.testing.assert_allclose(geometric_mean_blend(SCORES), [[0.4, 0.3], [0.4, 0.2], [0.4, 0.5]])
    # A zero score is floored, so the blend stays finite and tiny rather than log(0).
    assert 0 < geometric_mean_blend(np.array([[[0.0]], [[0.5]]]))[0, 0] < 1e-3


def test_rank_mean_ranks_each_class_over_clips_with_shared_ties():
    # member 0, class 0: 0.2 0.4 0.8 -> ranks 1 2 3 -> 0 .5 1; member 1: 0.8 0.4 0.2 -> 1 .5 0.
    # member 0, class 1: 0.9 0.1 0.5 -> 1 0 .5; member 1: 0.1 0.4 0.5 -> 0 .5 1.
    np.testing.assert_allclose(rank_mean_blend(SCORES), [[0.5, 0.5], [0.5, 0.25], [0.5, 0.75]])
    tied = np.array([[[0.3], [0.3], [0.9]]])  # tied clips share rank 1.5 -> 0.25
    np.testing.assert_allclose(rank_mean_blend(tied)[:, 0], [0.25, 0.25, 1.0])


def test_blends_by_name():
    table = blends([3.0, 1.0])
    assert list(table) == ["mean", "weighted_mean", "geometric_mean", "rank_mean"]
    np.testing.assert_allclose(table["weighted_mean"](SCORES), weighted_mean_blend(SCORES, [3.0, 1.0]))
