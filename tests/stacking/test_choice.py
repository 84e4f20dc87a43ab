"""The submitted ensemble: chosen on OOF scores only, checked by nested cross-validation without leakage."""
import dataclasses

import numpy as np
import pytest

from freesound_tf.config import FoldsConfig, StackerConfig
from freesound_tf.metrics import lwlrap
from freesound_tf.stacking import choice as choice_module
from freesound_tf.stacking.choice import choose_ensemble, pick

CONFIG = StackerConfig(name="stk", lr=0.05, max_epochs=40, patience=5, batch_size=32, stop_on="bce",
                       folds=FoldsConfig(n_splits=2, seed=0), selection_folds=2)


def _labels(n: int = 120, classes: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, classes)) < 0.3).astype(np.float32)
    labels[labels.sum(1) == 0, rng.integers(classes)] = 1.0
    return labels


def _noisy(labels: np.ndarray, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(labels * 0.6 + 0.2 + rng.normal(0, noise, labels.shape), 0.001, 0.999).astype(np.float32)


def test_ties_go_to_the_simpler_candidate():
    kinds = {"a": "member", "mean": "blend", "stk": "stacker"}
    assert pick({"stk": 0.9, "mean": 0.9, "a": 0.8}, kinds) == "mean"
    assert pick({"stk": 0.9, "mean": 0.9, "a": 0.9}, kinds) == "a"
    assert pick({"stk": 0.91, "mean": 0.9, "a": 0.9}, kinds) == "stk"


def test_a_strong_member_beats_blends_with_a_useless_one():
    labels = _labels()
    good, useless = _noisy(labels, 0.05, 1), np.random.default_rng(2).random(labels.shape).astype(np.float32)
    oof = np.stack([good, useless])
    chosen = choose_ensemble(oof, labels, ["good", "useless"], [1.0, 1.0], None,
                             StackerConfig(name="stk", selection_folds=0))
    assert chosen.name == "good" and chosen.kind == "member" and chosen.best_member == "good"
    assert chosen.oof_lwlrap["good"] == pytest.approx(lwlrap(labels, good))
    assert chosen.oof_lwlrap["good"] > chosen.oof_lwlrap["mean"]
    assert "good (member) has the best OOF lwlrap" in chosen.reason and chosen.nested_lwlrap is None


def test_members_with_complementary_errors_are_blended():
    labels = _labels(seed=3)
    a, b = _noisy(labels, 0.35, 4), _noisy(labels, 0.35, 5)  # independent noise: the mean is cleaner
    chosen = choose_ensemble(np.stack([a, b]), labels, ["a", "b"], [1.0, 1.0], None,
                             StackerConfig(name="stk", selection_folds=0))
    assert chosen.kind == "blend"
    assert chosen.oof_lwlrap[chosen.name] > max(chosen.oof_lwlrap["a"], chosen.oof_lwlrap["b"])


def test_nested_check_scores_each_outer_fold_with_a_stacker_that_never_saw_it(monkeypatch):
    labels = _labels(n=96, seed=6)
    oof = np.stack([_noisy(labels, 0.3, 7), _noisy(labels, 0.3, 8)])
    seen = []
    real_fit = choice_module.fit_stacker

    def recording_fit(member_oof, y, member_test, *args, **kwargs):
        seen.append((member_oof.copy(), member_test.copy()))
        return real_fit(member_oof, y, member_test, *args, **kwargs)

    monkeypatch.setattr(choice_module, "fit_stacker", recording_fit)
    stacker_oof = oof.mean(0)  # stands in for the k-fold stacker's OOF of the full run
    chosen = choose_ensemble(oof, labels, ["a", "b"], [1.0, 1.0], stacker_oof, CONFIG)
    assert len(seen) == CONFIG.selection_folds == len(chosen.nested_picks)
    rows = oof.transpose(1, 2, 0).reshape(len(labels), -1)
    for trained_on, scored in seen:  # the held-out rows of each outer fold are not among its training rows
        trained = {r.tobytes() for r in trained_on.reshape(len(trained_on), -1)}
        held_out = {r.tobytes() for r in scored.reshape(len(scored), -1)}
        assert not trained & held_out and len(trained) + len(held_out) == len({r.tobytes() for r in rows})
    assert 0.5 < chosen.nested_lwlrap <= 1.0
    assert "nested 2-fold check" in chosen.reason


def test_name_clashes():
    labels = _labels(n=20)
    oof = np.stack([_noisy(labels, 0.5, 1), _noisy(labels, 0.5, 2)])
    with pytest.raises(ValueError, match="member name 'mean' is also the name of a blend"):
        choose_ensemble(oof, labels, ["mean", "b"], [1.0, 1.0], None, CONFIG)
    # A stacker named like a member stays a candidate of its own.
    chosen = choose_ensemble(oof, labels, ["a", "b"], [1.0, 1.0], oof[0] * 0 + labels,
                             dataclasses.replace(CONFIG, name="a", selection_folds=0))
    assert chosen.name == "a (stacker)" and chosen.kind == "stacker"
