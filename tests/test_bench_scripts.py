"""The benchmark scripts run end to end on tiny settings and write the JSON they promise (no timing checks)."""
import json
import subprocess
import sys
from pathlib import Path

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
                       "1", "--clips", "8", "--sample-rate", "8000", "--seconds", "0.5", "--batch", "4", "--steps",
                       "2", "--rounds", "1", *TINY_MODEL, "--json", str(out))
    report = json.loads(out.read_text())
    assert set(report["loaders"]) == {"python", "graph, memory", "graph, records"}
    assert set(report["fits"]) == {"fit, graph", "fit, records", "fit, in memory"}
    for row in [*report["loaders"].values(), *report["fits"].values()]:
        assert row["clips_per_s"] > 0 and row["step_clips_per_s"] > 0 and row["cpu_seconds"] >= 0
        assert len(row["rounds"]) == 1
    fits = report["fits"]
    ratio = report["fit_ratios"]["fit, graph"]
    assert ratio["paired"] == fits["fit, in memory"]["seconds"] / fits["fit, graph"]["seconds"]  # one round
    assert set(ratio) == {"paired", "quartiles", "step", "cpu"}
    assert len(report["loadavg_before"]) == 3 and report["settings"]["steps"] == 2
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
