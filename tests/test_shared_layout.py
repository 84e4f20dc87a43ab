"""bench/shared_layout.py: the shared UrbanSound8K layout with each curated clip's recording as its group.

Needs ../shared (real data never enters the repository); skipped without it."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from shared_layout import SUBSET, TOOL, write_layout, write_pooled_layout, write_subset_layout  # noqa: E402

pytestmark = pytest.mark.skipif(not (SUBSET / "metadata.csv").exists() or not TOOL.exists(),
                                reason="../shared/data/urbansound8k-subset or make_fat_layout.py not present")
SMALL = ["--n-curated", "30", "--n-noisy", "10", "--n-test", "10", "--seed", "3"]


def test_the_grouped_layout_is_the_tools_layout_plus_true_recordings(tmp_path):
    subprocess.run([sys.executable, str(TOOL), str(SUBSET), str(tmp_path / "plain"), *SMALL], check=True,
                   capture_output=True)
    write_layout(tmp_path / "grouped", SMALL)
    plain, grouped = tmp_path / "plain", tmp_path / "grouped"
    for name in ("train_noisy.csv", "test_truth.csv", "sample_submission.csv"):
        assert (plain / name).read_bytes() == (grouped / name).read_bytes(), name
    for folder in ("train_curated", "train_noisy", "test"):
        for wav in sorted((plain / folder).iterdir()):
            assert wav.read_bytes() == (grouped / folder / wav.name).read_bytes(), wav
    curated = pd.read_csv(grouped / "train_curated.csv", dtype=str)
    assert curated[["fname", "labels"]].equals(pd.read_csv(plain / "train_curated.csv", dtype=str))
    # Each group is a source recording of the curated folds holding the clip's first label.
    meta = pd.read_csv(SUBSET / "metadata.csv", dtype=str)
    classes_of = meta[meta["fold"] == "1"].groupby("fsID")["class"].agg(set)
    for labels, group in zip(curated["labels"], curated["group"]):
        assert labels.split(",")[0] in classes_of[group]


def test_test_recordings_are_the_test_clips_sources_and_come_back_if_deleted(tmp_path):
    grouped = write_layout(tmp_path / "grouped", SMALL)
    recordings = pd.read_csv(grouped / "test_recordings.csv", dtype=str)
    truth = pd.read_csv(grouped / "test_truth.csv", dtype=str)
    assert list(recordings["fname"]) == list(truth["fname"])
    meta = pd.read_csv(SUBSET / "metadata.csv", dtype=str)
    classes_of = meta[meta["fold"] == "2"].groupby("fsID")["class"].agg(set)
    for labels, group in zip(truth["labels"], recordings["group"]):
        assert labels.split(",")[0] in classes_of[group]
    (grouped / "test_recordings.csv").unlink()  # a layout written before the file existed
    write_layout(grouped, SMALL)
    assert pd.read_csv(grouped / "test_recordings.csv", dtype=str).equals(recordings)
    assert not (tmp_path / "grouped.again").exists()


def test_pooled_layout_adds_the_noisy_clips_under_their_true_labels(tmp_path):
    from freesound_tf.data.layout import load_layout

    base = write_layout(tmp_path / "base", SMALL)
    pooled = load_layout(write_pooled_layout(tmp_path / "pooled", base, SMALL))
    curated = pd.read_csv(base / "train_curated.csv", dtype=str)
    noisy = pd.read_csv(base / "train_noisy.csv", dtype=str)
    table = pd.read_csv(tmp_path / "pooled" / "train_curated.csv", dtype=str)
    assert list(table["fname"]) == list(curated["fname"]) + list(noisy["fname"])
    assert table[:len(curated)].equals(curated)
    true_noisy = table[len(curated):]
    assert (true_noisy["labels"].values != noisy["labels"].values).any()  # the corrupted ones are undone
    meta = pd.read_csv(SUBSET / "metadata.csv", dtype=str)
    classes_of = meta[meta["fold"] == "2"].groupby("fsID")["class"].agg(set)
    for labels, group in zip(true_noisy["labels"], true_noisy["group"]):
        assert labels.split(",")[0] in classes_of[group]
    for fname in noisy["fname"]:
        pooled_audio = tmp_path / "pooled" / "train_curated" / fname
        assert pooled_audio.read_bytes() == (base / "train_noisy" / fname).read_bytes()
    assert pooled.splits["test"].fnames == load_layout(base).splits["test"].fnames
    assert (tmp_path / "pooled" / "test_recordings.csv").read_bytes() == (base / "test_recordings.csv").read_bytes()
    assert "noisy" not in pooled.splits and not (tmp_path / "pooled" / "clean").exists()
    assert not (tmp_path / "pooled.partial").exists()


def test_subset_layout_keeps_whole_recordings(tmp_path):
    base = write_layout(tmp_path / "base", SMALL)
    (tmp_path / "half" / "test").mkdir(parents=True)  # what a killed build could leave
    (tmp_path / "half.partial" / "train_curated").mkdir(parents=True)
    write_subset_layout(tmp_path / "half", base, share=0.5)
    assert not (tmp_path / "half.partial").exists()
    curated = pd.read_csv(base / "train_curated.csv", dtype=str)
    half = pd.read_csv(tmp_path / "half" / "train_curated.csv", dtype=str)
    kept = set(half["group"])
    assert len(kept) == round(curated["group"].nunique() / 2)
    assert half.equals(curated[curated["group"].isin(kept)].reset_index(drop=True))
    for name in ("test_truth.csv", "test_recordings.csv"):
        assert (tmp_path / "half" / name).read_bytes() == (base / name).read_bytes()
