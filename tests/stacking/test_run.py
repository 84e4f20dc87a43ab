"""`run_stacking` end to end on two tiny trained members, and stacker recipe errors."""
import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from freesound_tf.config import ConfigError, load_stacker_recipe
from freesound_tf.metrics import lwlrap
from freesound_tf.stacking import run_stacking

SMALL_RECIPE = """
name = "lc1d_small"
lr = 0.01
max_epochs = 3
patience = 2
batch_size = 8
selection_folds = 2
[weights]
tiny_v1mix = 2.0
[folds]
n_splits = 2
seed = 0
"""


def test_run_stacking_on_trained_members_writes_table_submission_and_models(tiny_runs, tmp_path, capsys):
    recipe = tmp_path / "small.toml"
    recipe.write_text(SMALL_RECIPE)
    out = tmp_path / "stack"
    table = run_stacking(recipe, tiny_runs, out)

    names = [row["name"] for row in table["rows"]]
    assert names == ["tiny_v1mix", "tiny_se", "mean", "weighted_mean", "geometric_mean", "rank_mean", "lc1d_small"]
    assert table["weights"] == {"tiny_v1mix": 2.0, "tiny_se": 1.0}
    assert json.loads((out / "table.json").read_text()) == table
    printed = capsys.readouterr().out
    assert all(name in printed for name in names) and "OOF clips" in printed

    # Member rows agree with each member's own metrics (all folds ran, so the same clips).
    for row, run in zip(table["rows"][:2], tiny_runs):
        metrics = json.loads((run / "metrics.json").read_text())
        assert row["oof_lwlrap"] == pytest.approx(metrics["oof_lwlrap"], abs=1e-6)
        assert row["test_lwlrap"] == pytest.approx(metrics["test_lwlrap"], abs=1e-6)

    oof_labels = np.load(tiny_runs[0] / "oof_labels.npy")
    oof_stacked, test_stacked = np.load(out / "oof_stacked.npy"), np.load(out / "test_stacked.npy")
    assert oof_stacked.shape == oof_labels.shape and np.isfinite(oof_stacked).all()
    assert table["rows"][-1]["oof_lwlrap"] == pytest.approx(lwlrap(oof_labels, oof_stacked))
    assert table["rows"][-1]["test_lwlrap"] == pytest.approx(lwlrap(np.load(tiny_runs[0] / "test_labels.npy"),
                                                                     test_stacked))

    member_test = pd.read_csv(tiny_runs[0] / "test.csv")
    submission = pd.read_csv(out / "submission.csv")
    assert list(submission.columns) == list(member_test.columns)
    assert list(submission["fname"]) == list(member_test["fname"])
    # The submission is the candidate with the best OOF lwlrap (test scores play no part in the choice).
    choice = table["choice"]
    candidates = {row["name"]: row["oof_lwlrap"] for row in table["rows"]
                  if row["name"] != "rank_mean"}  # rank_mean cannot score one clip alone: no candidate
    assert choice["oof_lwlrap"] == pytest.approx(candidates)
    assert candidates[choice["name"]] == max(candidates.values())
    assert len(choice["nested_picks"]) == 2 and 0.0 < choice["nested_lwlrap"] <= 1.0
    member_tests = np.stack([np.load(run / "test.npy") for run in tiny_runs])
    expected = {"tiny_v1mix": member_tests[0], "tiny_se": member_tests[1], "mean": member_tests.mean(0),
                "weighted_mean": (2 * member_tests[0] + member_tests[1]) / 3,
                "geometric_mean": np.exp(np.log(np.maximum(member_tests, 1e-7)).mean(0)),
                "lc1d_small": test_stacked}[choice["name"]]
    np.testing.assert_allclose(submission.iloc[:, 1:].to_numpy(), expected, atol=1e-6)
    assert f"submitted: {choice['name']}" in printed

    stack = json.loads((out / "stack.json").read_text())
    assert [m["name"] for m in stack["members"]] == ["tiny_v1mix", "tiny_se"]
    assert [m["weight"] for m in stack["members"]] == [2.0, 1.0]
    assert stack["classes"] == list(member_test.columns[1:]) and stack["input_shape"] == [len(stack["classes"]), 2]
    assert stack["fold_models"] == ["stacker_fold0.keras", "stacker_fold1.keras"]
    # stack.json is enough to recompute the stacked test scores from the members' test.npy.
    member_scores = np.stack([np.load(m["run_dir"] + "/test.npy") for m in stack["members"]], axis=-1)
    models = [keras.models.load_model(out / name, compile=False) for name in stack["fold_models"]]
    np.testing.assert_allclose(np.mean([np.asarray(m(member_scores)) for m in models], axis=0), test_stacked,
                               atol=1e-6)
    assert set(pd.read_csv(out / "stacker_folds.csv")["fold"]) == {0, 1}


def test_stacker_recipe_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("shfit = 1.6\n")
    with pytest.raises(ConfigError, match=r"bad.toml: shfit: unknown key"):
        load_stacker_recipe(bad)
    bad.write_text("[weights]\nv1mix = -1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: weights.v1mix: must be a number > 0"):
        load_stacker_recipe(bad)
    with pytest.raises(ConfigError, match="stacker recipe not found"):
        load_stacker_recipe(tmp_path / "missing.toml")


def test_the_seed_004_recipe_loads_with_its_settings():
    config = load_stacker_recipe(Path(__file__).resolve().parents[2] / "stacking" / "lc1d.toml")
    assert (config.shift, config.lr, config.batch_size, config.patience, config.folds.n_splits) == (1.6, 1e-4, 40, 15, 10)
    assert config.weight("v1mix") == 2.1 and config.weight("max3exam") == 1.9 and config.weight("se") == 1.0


def test_single_label_stacking_reports_map3_and_submits_top_3_labels(make_run, tmp_path):
    rng = np.random.default_rng(0)
    classes = ["cat", "dog", "owl", "bee"]
    fnames, test_fnames = [f"c{i}.wav" for i in range(24)], ["t0.wav", "t1.wav", "t2.wav"]
    labels = np.eye(4)[np.arange(24) % 4]
    runs = [make_run(name, classes, fnames, np.clip(labels * 0.5 + rng.random((24, 4)) * 0.5, 0, 1), labels,
                     test_fnames, rng.random((3, 4)), multilabel=False) for name in ("m1", "m2")]
    recipe = tmp_path / "small.toml"
    recipe.write_text(SMALL_RECIPE)
    table = run_stacking(recipe, runs, tmp_path / "stack")
    assert all("oof_map3" in row and "test_lwlrap" not in row for row in table["rows"])
    submission = pd.read_csv(tmp_path / "stack" / "submission.csv")
    assert list(submission.columns) == ["fname", "label"] and list(submission["fname"]) == test_fnames
    chosen = table["choice"]["name"]
    scores = (np.load(tmp_path / "stack" / "test_stacked.npy") if table["choice"]["kind"] == "stacker"
              else {"m1": np.load(runs[0] / "test.npy"), "m2": np.load(runs[1] / "test.npy")}.get(chosen))
    if scores is None:  # a blend; the weighted mean is the mean here (m1, m2 both weight 1)
        both = np.stack([np.load(r / "test.npy") for r in runs])
        scores = np.exp(np.log(np.maximum(both, 1e-7)).mean(0)) if chosen == "geometric_mean" else both.mean(0)
    expected = [" ".join(classes[i] for i in np.argsort(-row, kind="stable")[:3]) for row in scores]
    assert list(submission["label"]) == expected


def test_stacker_and_selection_folds_keep_each_recording_whole(make_run, tmp_path, monkeypatch):
    """Members trained on a CSV with a group column pass it on (oof.csv): the stacker's folds and the
    nested check's outer folds never split a recording, so the stacker's OOF is scored on unheard ones."""
    import freesound_tf.stacking.choice as choice_module

    rng = np.random.default_rng(0)
    classes = ["cat", "dog", "owl"]
    fnames, test_fnames = [f"c{i}.wav" for i in range(36)], ["t0.wav", "t1.wav"]
    groups = [f"rec{i // 4}" for i in range(36)]  # 9 recordings of 4 clips
    labels = np.eye(3)[(np.arange(36) // 4) % 3]
    runs = [make_run(name, classes, fnames, np.clip(labels * 0.5 + rng.random((36, 3)) * 0.5, 0, 1), labels,
                     test_fnames, rng.random((2, 3)), groups=groups) for name in ("m1", "m2")]
    outer_folds = []
    make_folds = choice_module.make_folds
    monkeypatch.setattr(choice_module, "make_folds",
                        lambda *a, **k: outer_folds.append(make_folds(*a, **k)) or outer_folds[-1])
    recipe = tmp_path / "small.toml"
    recipe.write_text(SMALL_RECIPE)
    run_stacking(recipe, runs, tmp_path / "stack")

    stacker_folds = pd.read_csv(tmp_path / "stack" / "stacker_folds.csv")
    assert list(stacker_folds["fname"]) == fnames
    for folds in (stacker_folds["fold"].to_numpy(), *outer_folds):
        by_group = pd.Series(folds).groupby(groups).nunique()
        assert (by_group == 1).all() and len(set(folds)) == 2
    assert len(outer_folds) == 1
