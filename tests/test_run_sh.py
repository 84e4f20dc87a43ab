"""`sh run.sh` end to end on a tiny demo set: every file the pipeline promises exists."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.runs_first
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


FAKE_CLI = """#!/bin/sh
# Stands in for freesound-tf: logs the call, writes what run.sh reads next.
echo "$@" >> "$CALLS"
case "$1" in
    stack) out="$(echo "$@" | sed 's/.*--out //')"; mkdir -p "$out"; echo fname > "$out/submission.csv" ;;
    export) out="$(echo "$@" | sed 's/.*--out //')"; mkdir -p "$out/1" ;;
esac
"""


def _run_with_fake_cli(tmp_path: Path, gpu: bool) -> tuple[str, str]:
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    (venv_bin / "freesound-tf").write_text(FAKE_CLI)
    (venv_bin / "freesound-tf").chmod(0o755)
    tools = tmp_path / "tools"
    tools.mkdir()
    if gpu:
        (tools / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n")
        (tools / "nvidia-smi").chmod(0o755)
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "train_curated.csv").write_text("fname,labels\n")  # user data: not the demo
    calls = tmp_path / "calls.txt"
    env = {"PATH": f"{tools}:/usr/bin:/bin", "HOME": str(tmp_path), "FREESOUND_TF_NO_SETUP": "1",
           "VENV": str(tmp_path / "venv"), "CALLS": str(calls), "INPUT": str(tmp_path / "input"),
           "RUNS": str(tmp_path / "runs"), "SUBMISSION": str(tmp_path / "sub.csv")}
    done = subprocess.run(["sh", "run.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, calls.read_text()


def test_without_a_gpu_user_data_trains_the_cpu_recipes_and_says_so(tmp_path):
    stdout, calls = _run_with_fake_cli(tmp_path, gpu=False)
    trained = [line.split("--recipe ")[1].split()[0] for line in calls.splitlines() if line.startswith("train")]
    assert trained == ["models/cpu_cnn9.toml", "models/cpu_ds_cnn2d.toml"]
    assert all((REPO / recipe).exists() for recipe in trained)
    assert "--recipe stacking/cpu.toml" in calls and (REPO / "stacking" / "cpu.toml").exists()
    assert "no GPU found" in stdout and "sized for a GPU" in stdout


def test_with_a_gpu_user_data_trains_the_seed_recipes(tmp_path):
    stdout, calls = _run_with_fake_cli(tmp_path, gpu=True)
    trained = [line.split("--recipe ")[1].split()[0] for line in calls.splitlines() if line.startswith("train")]
    assert trained[0] == "models/v1mix.toml" and len(trained) == 6
    assert "--recipe stacking/lc1d.toml" in calls and "no GPU found" not in stdout
