"""bench/shared_layout.py: the shared UrbanSound8K layout with each curated clip's recording as its group.

Needs ../shared (real data never enters the repository); skipped without it."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from shared_layout import SUBSET, TOOL, write_layout  # noqa: E402

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
