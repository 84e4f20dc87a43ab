"""The benchmark scripts run end to end on tiny settings and write the JSON they promise (no timing checks)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Without the global-feature GRU: tracing its training step alone would take most of the test's time.
TINY_MODEL = ["--stem-width", "4", "--block-widths", "4", "8", "--n-fft", "256", "--n-mels", "32",
              "--no-global-features"]
TINY_RECIPE = """
name = "tiny"
[audio]
sample_rate = 8000
[pipeline]
crop_seconds = 0.5
[frontend]
n_fft = 256
hop_length = 128
n_mels = 32
[model]
stem_width = 4
block_widths = [4, 8]
use_global_features = false
"""


def run_bench(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_pipeline_efficiency_writes_the_loaders_the_fits_and_their_ratios(tmp_path) -> None:
    out = tmp_path / "pipeline_efficiency.json"
    stdout = run_bench("pipeline_efficiency.py", "--classes", "3", "--loader-clips", "8", "--loader-rate", "8000",
                       "--loader-seconds", "0.5", "--loader-batch", "4", "--loader-batches", "2", "--loader-rounds",
                       "1", "--clips", "8", "--sample-rate", "8000", "--seconds", "0.5", "--batch", "4", "--epochs",
                       "2", "--rounds", "1", *TINY_MODEL, "--json", str(out))
    report = json.loads(out.read_text())
    assert set(report["loaders"]) == {"python", "graph, memory", "graph, records"}
    assert set(report["fits"]) == {"fit, graph", "fit, records", "fit, records, an iterator per epoch",
                                   "fit, in memory"}
    for row in [*report["loaders"].values(), *report["fits"].values()]:
        assert row["clips_per_s"] > 0 and row["step_clips_per_s"] > 0 and row["cpu_seconds"] >= 0
        assert len(row["rounds"]) == 1
    fits = report["fits"]
    ratio = report["fit_ratios"]["fit, graph"]
    assert ratio["paired"] == fits["fit, in memory"]["seconds"] / fits["fit, graph"]["seconds"]  # one round
    assert set(ratio) == {"paired", "quartiles", "step", "cpu"}
    assert len(report["loadavg_before"]) == 3 and report["settings"]["epochs"] == 2
    assert "less CPU per batch than python" in stdout and "fit, graph / fit, in memory" in stdout


def test_inference_times_every_path_on_batch_and_single_clip(tmp_path) -> None:
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE)
    out = tmp_path / "inference.json"
    stdout = run_bench("inference.py", "--recipe", str(recipe), "--classes", "3", "--batch", "4", "--clip-seconds",
                       "1", "--repeats", "2", "--batch-repeats", "1", "--warmup", "1", "--json", str(out))
    report = json.loads(out.read_text())
    paths = {"keras predict", "predict_on_batch", "tf.function call", "SavedModel serve"}
    assert set(report["results"]) == {"batch", "clip"}
    for shape in ("batch", "clip"):
        assert set(report["results"][shape]) == paths
        for row in report["results"][shape].values():
            assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"]
        assert set(report["savedmodel_over_keras"][shape]) == paths - {"SavedModel serve"}
    assert report["max_score_difference"] <= 1e-4  # every path scored the same model
    assert "SavedModel time / Keras path time" in stdout


def test_quality_table_prints_each_members_oof_at_the_test_label_mix(tmp_path, monkeypatch) -> None:
    """bench/quality.py needs ../shared to run; its OOF-at-test-mix column is checked on a fake run folder."""
    import numpy as np

    from freesound_tf.metrics import lwlrap

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import quality

    rng = np.random.default_rng(0)
    oof_labels = np.eye(3)[rng.integers(0, 3, 60)]  # one label per clip
    oof = np.clip(oof_labels * 0.6 + rng.random((60, 3)), 0, 1)
    np.save(tmp_path / "oof.npy", oof)
    np.save(tmp_path / "oof_labels.npy", oof_labels)
    np.save(tmp_path / "test_labels.npy", np.concatenate([oof_labels, oof_labels]))  # the OOF label mix
    assert quality.oof_at_test_mix(tmp_path) == pytest.approx(lwlrap(oof_labels, oof))
    np.save(tmp_path / "test_labels.npy", np.eye(3)[np.zeros(10, int)])  # test clips of class 0 only
    only_class0 = quality.oof_at_test_mix(tmp_path)
    class0 = oof_labels[:, 0] == 1
    assert only_class0 == pytest.approx(lwlrap(oof_labels[class0], oof[class0]))
    member = {"oof_lwlrap": 0.8, "oof_at_test_mix": only_class0, "test_lwlrap": 0.7, "test_interval": (0.61, 0.78),
              "minutes": 1.0}
    table = quality.format_split("A", {"curated_clips": 60, "test_clips": 10, "classes": 3, "choice": {"reason": "r"},
                                       "rows": {"m, noisy -> curated": member,
                                                "blend: mean": {"oof_lwlrap": 0.81, "test_lwlrap": 0.72}}})
    assert "OOF @ test mix" in table and f"{only_class0:.4f}" in table and "0.610-0.780" in table


def test_test_interval_resamples_the_recordings_named_in_the_layout(tmp_path, monkeypatch) -> None:
    """A run's test rows are matched to their recordings by file name, whatever the order of either file."""
    import numpy as np
    import pandas as pd

    from freesound_tf.metrics import lwlrap_interval

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import learning_curve
    from shared_layout import interval_over_recordings

    rng = np.random.default_rng(1)
    labels = np.eye(3)[rng.integers(0, 3, 30)]
    scores = np.clip(labels * 0.5 + rng.random((30, 3)), 0, 1)
    fnames = [f"t{i:02d}.wav" for i in range(30)]
    recordings = [f"rec{i % 7}" for i in range(30)]
    np.save(tmp_path / "test.npy", scores)
    np.save(tmp_path / "test_labels.npy", labels)
    pd.DataFrame({"fname": fnames, "a": 0}).to_csv(tmp_path / "test.csv", index=False)
    layout = tmp_path / "layout"
    layout.mkdir()
    pd.DataFrame({"fname": fnames, "group": recordings})[::-1].to_csv(layout / "test_recordings.csv", index=False)
    assert interval_over_recordings(tmp_path, layout) == lwlrap_interval(labels, scores, recordings)
    row = {"recordings": 7, "clips": 30, "oof_lwlrap": 0.7, "test_lwlrap": 0.66, "test_interval": (0.6, 0.71),
           "minutes": 2}
    table = learning_curve.format_split("B", "cpu_cnn9", {"half": row})
    assert "0.600-0.710" in table and "half" in table
