"""The `freesound-tf` commands end to end on tiny synthesized data."""
import json
import runpy
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import tomli_w

from freesound_tf.cli import build_parser, main
from freesound_tf.config import (
    AudioConfig, FoldsConfig, FrontendConfig, ModelConfig, PipelineConfig, Recipe, StageConfig, TrainConfig, to_dict,
)
from freesound_tf.data.audio import load_audio, trim_silence
from freesound_tf.data.demo import make_demo_dataset
from freesound_tf.data.pipeline import crop_clip, crop_positions

SR = 8000


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), seed=5, sample_rate=SR, n_curated=30, n_noisy=10,
                             n_test=8)


@pytest.fixture(scope="module")
def trained_run(demo, tmp_path_factory):
    """A one-fold run of a small cnn9 without the global-feature branch (quick to trace)."""
    root = tmp_path_factory.mktemp("train")
    recipe = Recipe(name="cli", audio=AudioConfig(sample_rate=SR), pipeline=PipelineConfig(crop_seconds=1.0, batch_size=8),
                    folds=FoldsConfig(n_splits=2), frontend=FrontendConfig(n_fft=256, hop_length=128, n_mels=32),
                    model=ModelConfig(stem_width=4, block_widths=(4, 8, 8), use_global_features=False),
                    train=TrainConfig(finetune=StageConfig(epochs=1), folds_to_run=(0,)))
    (root / "cli.toml").write_text(tomli_w.dumps(to_dict(recipe)))
    code = main(["train", "--recipe", str(root / "cli.toml"), "--input", str(demo), "--work", str(root / "work"),
                 "--runs", str(root / "runs"), "--workers", "1", "--quiet"])
    assert code == 0
    return root / "runs" / "cli", recipe


def test_every_command_explains_its_options(capsys):
    parser = build_parser()
    for command in ["demo-data", "prepare", "train", "predict", "evaluate", "models"]:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert f"freesound-tf {command}" in text and text.count("--") >= 2


def test_prepare_writes_caches_class_map_folds_and_summary(demo, tmp_path, capsys):
    assert main(["prepare", "--input", str(demo), "--work", str(tmp_path), "--workers", "1", "--quiet"]) == 0
    for name in ["classes.json", "folds.csv", "prepare.json"]:
        assert (tmp_path / name).exists()
    folds = pd.read_csv(tmp_path / "folds.csv")
    assert len(folds) == 30 and folds["fold"].nunique() == 10  # default recipe: 10 folds
    assert "curated" in capsys.readouterr().out


def test_bad_input_ends_with_one_line_naming_the_file(tmp_path, capsys):
    (tmp_path / "train_curated.csv").write_text("fname,labels\na.wav,Bark\n")
    (tmp_path / "sample_submission.csv").write_text("fname,Meow\nt.wav,0\n")
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "t.wav").write_bytes(b"")
    (tmp_path / "train_curated").mkdir()
    assert main(["prepare", "--input", str(tmp_path), "--work", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train_curated.csv" in err
    (tmp_path / "bad.toml").write_text("[model]\nw_rato = 2\n")
    assert main(["train", "--recipe", str(tmp_path / "bad.toml"), "--input", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.toml" in err and "model.w_rato" in err


def test_predict_scores_arbitrary_clips_and_skips_unreadable_ones(trained_run, tmp_path):
    run, recipe = trained_run
    clips = tmp_path / "clips"
    clips.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(int(44100 * 2.5)) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * rng.normal(size=t.size)], axis=1) * 0.3
    sf.write(clips / "stereo_44k.wav", stereo, 44100, subtype="PCM_24")
    sf.write(clips / "short_8k.flac", 0.2 * rng.normal(size=3000), SR)
    (clips / "broken.wav").write_bytes(b"RIFF\x00\x00 not audio at all")
    (clips / "notes.txt").write_text("not a clip")
    out = tmp_path / "submission.csv"
    # A fresh process, as a user runs it: loading the run's models must not rely on this test
    # process having imported the library's custom layers already.
    done = subprocess.run([sys.executable, "-m", "freesound_tf.cli", "predict", "--run", str(run), "--audio-dir",
                           str(clips), "--out", str(out), "--work", str(tmp_path / "work"), "--workers", "1",
                           "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout
    assert "broken.wav" in printed and "1 unreadable" in printed
    submission = pd.read_csv(out)
    classes = list(pd.read_json(run / "classes.json", typ="series")["classes"])
    assert list(submission.columns) == ["fname", *classes]
    # Every audio file gets a row (Kaggle rejects a submission with missing rows): the unreadable one
    # holds the run's class priors.
    assert list(submission["fname"]) == ["broken.wav", "short_8k.flac", "stereo_44k.wav"]
    priors = json.loads((run / "class_priors.json").read_text())["priors"]
    np.testing.assert_allclose(submission.set_index("fname").loc["broken.wav"].to_numpy(float), priors, atol=2e-6)

    # Independent recomputation: decode, trim, three crops, average, straight through the model.
    model = keras.models.load_model(run / "fold0" / "best.keras", compile=False)
    for fname in ["short_8k.flac", "stereo_44k.wav"]:
        audio, _, _ = trim_silence(load_audio(clips / fname, SR), recipe.audio.trim_top_db)

        class One:
            lengths = np.array([len(audio)])

            def read(self, i, start=0, stop=None):
                return audio[start:stop]

        crops = np.stack([crop_clip(One(), 0, SR, p) for p in crop_positions(3)])
        length = np.full((3, 1), len(audio) / (10 * SR), np.float32)
        expected = np.asarray(model({"waveform": crops, "length": length})).mean(axis=0)
        got = submission.set_index("fname").loc[fname].to_numpy(float)
        np.testing.assert_allclose(got, expected, atol=2e-4)  # int16 cache quantization


def test_evaluate_prints_scores_of_a_submission(demo, tmp_path, capsys):
    truth = pd.read_csv(demo / "test_truth.csv")
    classes = list(pd.read_csv(demo / "sample_submission.csv").columns[1:])
    perfect = pd.DataFrame([[float(c in labels.split(",")) for c in classes] for labels in truth["labels"]],
                           columns=classes)
    perfect.insert(0, "fname", truth["fname"])
    perfect.to_csv(tmp_path / "sub.csv", index=False)
    assert main(["evaluate", "--submission", str(tmp_path / "sub.csv"), "--truth", str(demo / "test_truth.csv"),
                 "--json", str(tmp_path / "scores.json")]) == 0
    assert "lwlrap   1.00000" in capsys.readouterr().out
    assert pd.read_json(tmp_path / "scores.json", typ="series")["lwlrap"] == 1.0


def test_version_module_entry_and_options_after_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["python -m freesound_tf", "--version"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("freesound_tf", run_name="__main__")  # what `python -m freesound_tf` runs
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == "freesound-tf 0.1.0"
    parser = build_parser()
    for argv in (["-v", "--quiet", "models"], ["models", "-v", "--quiet"]):
        args = parser.parse_args(argv)
        assert args.verbose and args.quiet
    args = parser.parse_args(["models"])
    assert not args.verbose and not args.quiet
    assert parser.parse_args(["stack", "--runs", "a", "-v"]).verbose  # was only --fit-verbose
    assert parser.parse_args(["demo-data", "--out", "d"]).out == "d"
    assert main(["demo-data", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 2  # the folder once


def test_tag_a_run_prints_top_labels_per_file(trained_run, tmp_path, capsys):
    run, _ = trained_run
    rng = np.random.default_rng(3)
    sf.write(tmp_path / "a.wav", 0.2 * rng.normal(size=9000), SR)
    sf.write(tmp_path / "b.flac", 0.2 * rng.normal(size=4000), 16000)
    files = [str(tmp_path / "a.wav"), str(tmp_path / "b.flac")]
    assert main(["tag", *files, "--run", str(run), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == files[0] and lines[3] == files[1] and len(lines) == 6
    from freesound_tf import load_run

    scores = load_run(run).predict([load_audio(f, SR) for f in files], SR)
    best = [float(line.split()[0]) for line in lines[1:3]]
    np.testing.assert_allclose(best, np.sort(scores[0])[::-1][:2], atol=1e-3)
    assert main(["tag", files[0]]) == 2  # neither --run nor --saved-model
