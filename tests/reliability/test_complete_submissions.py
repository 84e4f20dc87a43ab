"""Every clip a submission needs gets a row, from `predict`, from a run's test.csv and from `stack`."""
import json
import shutil

import numpy as np
import pandas as pd
import soundfile as sf

from freesound_tf.cli import main
from freesound_tf.data.demo import make_demo_dataset
from freesound_tf.stacking import run_stacking
from tests.reliability.conftest import write_recipe

GARBAGE = b"RIFF\x10\x00\x00\x00WAVE but nothing after"


def _priors(run) -> np.ndarray:
    return np.array(json.loads((run / "class_priors.json").read_text())["priors"])


def _rows(csv) -> pd.DataFrame:
    return pd.read_csv(csv).set_index("fname")


def test_predict_scores_every_audio_file_and_rescores_changed_ones(tiny_runs, tmp_path, capsys, caplog):
    run = tiny_runs[0]
    test_dir = run.parents[1] / "demo" / "test"
    clips = tmp_path / "clips"
    clips.mkdir()
    originals = sorted(test_dir.iterdir())
    for source in originals[:3]:
        shutil.copy(source, clips / source.name)
    (clips / "broken.wav").write_bytes(GARBAGE)
    sf.write(clips / "silent.wav", np.zeros(8000, np.float32), 8000)  # a clip, if a quiet one
    (clips / "notes.txt").write_text("not audio")
    out = tmp_path / "sub.csv"
    args = ["predict", "--run", str(run), "--audio-dir", str(clips), "--out", str(out), "--work",
            str(tmp_path / "work"), "--workers", "1", "--quiet"]

    assert main(args) == 0
    printed = capsys.readouterr().out
    first = _rows(out)
    assert sorted(first.index) == sorted([p.name for p in originals[:3]] + ["broken.wav", "silent.wav"])
    np.testing.assert_allclose(first.loc["broken.wav"], _priors(run), atol=2e-6)
    assert not np.allclose(first.loc["silent.wav"], _priors(run), atol=1e-4)  # scored by the model
    assert "broken.wav" in printed and str(tmp_path / "sub.fallback.csv") in printed
    assert list(pd.read_csv(tmp_path / "sub.fallback.csv")["fname"]) == ["broken.wav"]
    assert "notes.txt" in caplog.text  # a file that is not scored is named

    # Replace a clip by another sound and repair the broken one: both are scored anew.
    target = originals[0].name
    shutil.copy(originals[3], clips / target)
    shutil.copy(originals[4], clips / "broken.wav")
    assert main(args) == 0
    second = _rows(out)
    assert not np.allclose(second.loc[target], first.loc[target], atol=1e-4)
    for name in [p.name for p in originals[1:3]] + ["silent.wav"]:
        np.testing.assert_allclose(second.loc[name], first.loc[name], atol=1e-6)
    assert not np.allclose(second.loc["broken.wav"], _priors(run), atol=1e-4)
    assert not (tmp_path / "sub.fallback.csv").exists()  # no stale list beside the new submission


def test_a_run_whose_test_clips_are_all_unreadable_finishes_with_every_row(tmp_path, capsys, caplog):
    """Reported: every fold trained, then "y_true has no positive label", on every rerun. Folds are
    also trained by two invocations (--folds 0, then --folds 1) into one run folder, and one test
    clip is repaired in between: only fold 1 can score it."""
    demo = make_demo_dataset(tmp_path / "demo", seed=9, sample_rate=8000, n_curated=32, n_noisy=2, n_test=5)
    for clip in (demo / "test").iterdir():
        clip.write_bytes(GARBAGE)
    bad_curated = sorted((demo / "train_curated").iterdir())[0]
    bad_curated.write_bytes(GARBAGE)
    recipe, work, run = write_recipe(tmp_path / "tiny.toml"), tmp_path / "work", tmp_path / "run"
    common = ["--input", str(demo), "--work", str(work), "--recipe", str(recipe), "--workers", "1", "--quiet"]

    assert main(["prepare", *common]) == 0
    printed = capsys.readouterr().out
    assert "5 skipped (listed in" in printed and ".report.csv" in printed
    assert f"{bad_curated.name} (cannot decode" in caplog.text  # the clip is named, with the reason

    sample = list(pd.read_csv(demo / "sample_submission.csv")["fname"])
    assert main(["train", *common, "--run-dir", str(run), "--folds", "0"]) == 0
    shutil.copy(sorted((demo / "train_curated").iterdir())[1], demo / "test" / sample[0])  # repaired
    assert main(["train", *common, "--run-dir", str(run), "--folds", "1"]) == 0
    test = _rows(run / "test.csv")
    assert list(test.index) == sample
    np.testing.assert_allclose(test.loc[sample[1:]].to_numpy(), np.tile(_priors(run), (4, 1)), atol=2e-6)
    assert not np.allclose(test.loc[sample[0]], _priors(run), atol=1e-4)
    assert list(pd.read_csv(run / "test_fallback.csv")["fname"]) == sample[1:]
    skipped = pd.read_csv(run / "skipped.csv")
    assert sorted(skipped["fname"]) == sorted([bad_curated.name, *sample[1:]])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["folds"] == [0, 1] and metrics["test_fallback_clips"] == 4 and "test_lwlrap" in metrics
    invocations = [json.loads(line)["folds"] for line in (run / "runs.jsonl").read_text().splitlines()]
    assert invocations == [[0], [1]]

    stacker = tmp_path / "stacker.toml"
    stacker.write_text('name = "tiny"\nmax_epochs = 2\npatience = 1\n[folds]\nn_splits = 2\n')
    run_stacking(stacker, [run], tmp_path / "stack")
    stacked = _rows(tmp_path / "stack" / "submission.csv")
    assert list(stacked.index) == sample
    np.testing.assert_allclose(stacked.loc[sample[1:]].to_numpy(), test.loc[sample[1:]].to_numpy(), atol=2e-6)
    assert list(pd.read_csv(tmp_path / "stack" / "test_fallback.csv")["fname"]) == sample[1:]
