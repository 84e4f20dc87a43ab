"""Seed 004's mixup: lambda 0.7 on raw audio; with the stage's probability the whole batch is mixed
with a shuffled copy of itself (any permutation, so an example may draw itself); labels mixed alike;
global features and length not mixed."""
from __future__ import annotations

import numpy as np
import pytest

from freesound_tf.augmentation import mixup_batch
from freesound_tf.config import PipelineConfig
from freesound_tf.data.pipeline import TrainInput
from tests.fidelity.seed004 import MEMBERS, recipe


@pytest.mark.parametrize("member", MEMBERS)
def test_seed_recipes_mix_whole_batches_of_raw_audio_only(member: str) -> None:
    p = recipe(member).pipeline
    assert (p.mixup_mode, p.mixup_lambda, p.mixup_scope, p.mixup_side_inputs) == ("fixed", 0.7, "batch", "keep")


def _batch(n: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    inputs = {"waveform": rng.standard_normal((n, 30)).astype(np.float32),
              "global_features": rng.standard_normal((n, 4, 12)).astype(np.float32),
              "length": rng.random((n, 1)).astype(np.float32)}
    return inputs, (rng.random((n, 5)) < 0.3).astype(np.float32)


def _partners(original: np.ndarray, mixed: np.ndarray, lam: float) -> np.ndarray:
    """The j with mixed_i = lam x_i + (1 - lam) x_j, for every row i (rows are distinct noise)."""
    residual = (mixed - lam * original) / (1 - lam)
    return np.abs(residual[:, None, :] - original[None, :, :]).sum(axis=2).argmin(axis=1)


def test_a_mixed_batch_is_the_batch_blended_with_one_permutation_of_itself() -> None:
    rng = np.random.default_rng(0)
    fixed_points = 0
    for trial in range(200):
        inputs, labels = _batch(5, rng)
        out, out_labels = mixup_batch(inputs, labels, np.random.default_rng(trial), prob=1.0, lam=0.7,
                                      scope="batch", side_inputs="keep")
        perm = _partners(inputs["waveform"], out["waveform"], 0.7)
        assert sorted(perm) == list(range(5))  # a permutation: every clip is someone's partner once
        np.testing.assert_allclose(out["waveform"], 0.7 * inputs["waveform"] + 0.3 * inputs["waveform"][perm],
                                   atol=1e-5)
        np.testing.assert_allclose(out_labels, 0.7 * labels + 0.3 * labels[perm], atol=1e-6)
        np.testing.assert_array_equal(out["global_features"], inputs["global_features"])
        np.testing.assert_array_equal(out["length"], inputs["length"])
        fixed_points += int((perm == np.arange(5)).sum())
    assert 150 < fixed_points < 250  # a random permutation of 5 has one fixed point on average


def test_the_stage_probability_is_drawn_once_per_batch() -> None:
    rng = np.random.default_rng(1)
    mixed_batches = 0
    for trial in range(1000):
        inputs, labels = _batch(8, rng)
        out, _ = mixup_batch(inputs, labels, np.random.default_rng(trial), prob=0.6, scope="batch",
                             side_inputs="keep")
        changed = np.any(out["waveform"] != inputs["waveform"], axis=1)
        perm = _partners(inputs["waveform"], out["waveform"], 0.7)
        assert changed.sum() in (0, int((perm != np.arange(8)).sum()))  # all or nothing
        mixed_batches += bool(changed.any())
    assert 0.55 < mixed_batches / 1000 < 0.65


def test_example_scope_and_blended_side_inputs_remain_available() -> None:
    inputs, labels = _batch(400, np.random.default_rng(2))
    out, _ = mixup_batch(inputs, labels, np.random.default_rng(3), prob=0.5, scope="example", side_inputs="blend")
    changed = np.any(out["waveform"] != inputs["waveform"], axis=1)
    assert 0.4 < changed.mean() < 0.6  # each example drawn on its own
    np.testing.assert_array_equal(np.any(out["length"] != inputs["length"], axis=1), changed)


class _Cache:
    """Eight 2-second clips of distinct noise at 100 Hz, distinct global features per clip."""

    def __init__(self) -> None:
        rng = np.random.default_rng(4)
        self.clips = rng.standard_normal((8, 200)).astype(np.float32)
        self.lengths = np.full(8, 200)
        self.length_feature = np.linspace(0.1, 0.8, 8).astype(np.float32)
        self.steps = 4

    def read(self, i, start=0, stop=None):
        return self.clips[i, start:stop]

    def read_global_features(self, indices):
        return np.stack([np.full((self.steps, 12), float(i)) for i in indices]).astype(np.float32)


def test_the_training_pipeline_mixes_as_the_seed_recipe_says() -> None:
    config = PipelineConfig(**{**{k: getattr(recipe("v1mix").pipeline, k) for k in (
        "mixup_mode", "mixup_lambda", "mixup_scope", "mixup_side_inputs")}, "crop_seconds": 1.0, "batch_size": 8})
    cache, labels = _Cache(), np.eye(8, dtype=np.float32)
    rows, seed = np.arange(8), np.int64(11)
    plain = TrainInput(cache, labels, config, 100, mixup_prob=0.0)._load(rows, seed)
    mixed = TrainInput(cache, labels, config, 100, mixup_prob=1.0)._load(rows, seed)
    wave, gfeat, length, y = mixed
    perm = _partners(plain[0], wave, 0.7)
    np.testing.assert_allclose(wave, 0.7 * plain[0] + 0.3 * plain[0][perm], atol=1e-5)
    np.testing.assert_allclose(y, 0.7 * labels + 0.3 * labels[perm], atol=1e-6)
    np.testing.assert_array_equal(gfeat, plain[1])  # each clip keeps its own global features ...
    np.testing.assert_array_equal(length, plain[2])  # ... and length
