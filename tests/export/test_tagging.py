"""Using an export: SavedModelScorer, `freesound-tf tag` / `predict --saved-model`, and the Kaggle
bundle's inference script run end to end in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr

from freesound_tf.cli import main
from freesound_tf.kaggle import bundled_requirements, make_bundle
from freesound_tf.tagging import SavedModelScorer, top_k
from freesound_tf.training.run_folder import load_run
from tests.export.helpers import clips_with_silence, library_scores, random_clips

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    """Three readable clips (one at 16 kHz, one with silence to trim) and one broken file."""
    folder = tmp_path_factory.mktemp("audio")
    clips = random_clips((9000, 5000)) + clips_with_silence()[:1]
    sf.write(folder / "a.wav", clips[0], 8000, subtype="FLOAT")
    sf.write(folder / "b.wav", soxr.resample(clips[1], 8000, 16000), 16000, subtype="FLOAT")
    sf.write(folder / "c.wav", clips[2], 8000, subtype="FLOAT")
    (folder / "broken.wav").write_bytes(b"RIFF not really")
    return folder


@pytest.fixture(scope="module")
def scorer(exports) -> SavedModelScorer:
    return SavedModelScorer(exports["mean"].parent)  # the base path: its newest version


@pytest.fixture(scope="module")
def decoded(audio_dir) -> list[np.ndarray]:
    """a, b, c as the library decodes them (b resampled to 8 kHz)."""
    from freesound_tf.data.audio import load_audio

    return [load_audio(audio_dir / name, 8000) for name in ("a.wav", "b.wav", "c.wav")]


def test_saved_model_scorer_reads_metadata_and_matches_library(exports, tiny_runs, scorer, decoded) -> None:
    assert scorer.path == exports["mean"]
    assert scorer.class_names == list(load_run(tiny_runs[0]).classes.names)
    assert scorer.sample_rate == 8000 and scorer.multilabel
    priors = json.loads((tiny_runs[0] / "class_priors.json").read_text())["priors"]
    np.testing.assert_allclose(scorer.priors, priors, atol=1e-6)  # the fallback score of an unreadable clip
    clips = decoded
    expected = np.mean([library_scores(run, clips) for run in tiny_runs], axis=0)
    np.testing.assert_allclose(scorer.predict(clips, 8000), expected, atol=1e-4)
    # Resampled on the way in: the same clips at 16 kHz score (almost) the same.
    upsampled = [soxr.resample(c, 8000, 16000) for c in clips]
    np.testing.assert_allclose(scorer.predict(upsampled, 16000), expected, atol=2e-3)


def test_tag_prints_top_k_per_file(exports, audio_dir, scorer, decoded, capsys) -> None:
    files = [str(audio_dir / n) for n in ("a.wav", "broken.wav", "c.wav")]
    assert main(["tag", *files, "--saved-model", str(exports["mean"]), "--top-k", "3", "--json"]) == 1
    captured = capsys.readouterr()
    assert "broken.wav" in captured.err
    tagged = json.loads(captured.out)
    assert [t["file"] for t in tagged] == [files[0], files[2]]
    expected = top_k(scorer.predict(decoded[:1], 8000), scorer.class_names, 3)[0]
    assert [(t["label"], pytest.approx(t["score"], abs=1e-5)) for t in tagged[0]["tags"]] == expected


def test_predict_with_saved_model_writes_a_row_per_file(exports, audio_dir, scorer, tmp_path, capsys) -> None:
    out = tmp_path / "sub.csv"
    assert main(["predict", "--saved-model", str(exports["mean"]), "--audio-dir", str(audio_dir),
                 "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert table["fname"].tolist() == ["a.wav", "b.wav", "broken.wav", "c.wav"]
    np.testing.assert_allclose(table[scorer.class_names].to_numpy()[2], scorer.priors, atol=1e-5)
    assert pd.read_csv(tmp_path / "sub.fallback.csv")["fname"].tolist() == ["broken.wav"]
    assert "1 unreadable clip(s) scored with the class priors" in capsys.readouterr().out


def test_kaggle_bundle_script_writes_a_row_for_every_clip(exports, audio_dir, scorer, decoded, tmp_path) -> None:
    bundle = make_bundle([], tmp_path / "bundle", saved_model=exports["mean"], wheels=False)
    assert {p.name for p in bundle.iterdir()} == {"model", "kaggle_infer.py", "inference.ipynb", "bundle.json"}
    sample = tmp_path / "sample_submission.csv"
    pd.DataFrame({"fname": ["c.wav", "broken.wav", "a.wav", "b.wav", "gone.wav"]}).to_csv(sample, index=False)
    out = tmp_path / "submission.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, str(bundle / "kaggle_infer.py"), "--test-dir", str(audio_dir),
                          "--sample-submission", str(sample), "--out", str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    table = pd.read_csv(out)
    assert table["fname"].tolist() == ["c.wav", "broken.wav", "a.wav", "b.wav", "gone.wav"]
    scored = scorer.predict(decoded, 8000)  # a, b, c
    values = table[scorer.class_names].to_numpy()
    np.testing.assert_allclose(values[[2, 3, 0]], scored, atol=1e-5)
    np.testing.assert_allclose(values[[1, 4]], [scorer.priors] * 2, atol=1e-5)  # unreadable / missing: priors
    listed = pd.read_csv(tmp_path / "submission.fallback.csv")
    assert listed["fname"].tolist() == ["broken.wav", "gone.wav"] and "not in" in listed["reason"][1]
    assert "2 scored with the class priors" in run.stdout


def test_bundle_takes_pure_python_requirements_only() -> None:
    bundled = {r.split("==")[0] for r in bundled_requirements(REPO / "pyproject.toml")}
    assert {"kapre", "librosa", "tomli-w", "iterative-stratification"} <= bundled
    assert not bundled & {"tensorflow", "numpy", "scikit-learn", "pedalboard", "soundfile"}
