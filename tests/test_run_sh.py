"""`sh run.sh` end to end on a tiny demo set: every file the pipeline promises exists."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def test_run_sh_runs_the_whole_pipeline_on_a_tiny_demo_set(tmp_path):
    (tmp_path / "input").mkdir()  # empty: run.sh must fall back to the demo set
    env = {**os.environ, "FREESOUND_TF_NO_SETUP": "1", "VENV": sys.prefix, "INPUT": str(tmp_path / "input"),
           "WORK": str(tmp_path / "work"), "RUNS": str(tmp_path / "runs"), "SUBMISSION": str(tmp_path / "sub.csv"),
           "EPOCHS_SCALE": "0.1", "N_SPLITS": "2", "DEMO_ARGS": "--n-curated 24 --n-noisy 8 --n-test 6"}
    done = subprocess.run(["sh", "run.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = tmp_path / "runs"
    for member in ("demo", "demo_max3"):
        for name in ("recipe.toml", "oof.npy", "test.npy", "metrics.json", "fold0/best.keras", "fold1/best.keras",
                     "pretrain/best.keras", "plots/learning_curves.png"):
            assert (runs / member / name).exists(), f"{member}/{name}"
        assert json.loads((runs / member / "recipe.toml").with_name("task.json").read_text())["multilabel"]
    assert (runs / "stack" / "table.json").exists()
    assert (runs / "export" / "1" / "saved_model.pb").exists()
    submission = pd.read_csv(tmp_path / "sub.csv")
    assert len(submission) == 6 and submission.shape[1] == 11  # fname + 10 demo classes
    assert "lwlrap" in done.stdout and "SavedModel" in done.stdout
