"""SavedModel export round trip: TensorFlow-only loading, library parity (trimming, padded batches,
stacking), signatures, version folders."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tomli_w

from freesound_tf.config import to_dict
from freesound_tf.export import export_run
from freesound_tf.models import build_model
from freesound_tf.training.run_folder import load_run
from tests.conftest import tiny_recipe
from tests.export.helpers import clips_with_silence, library_scores, random_clips

# 8 kHz, 1 s crops: one clip shorter than a crop (zero-padded crops), one longer (three offsets), and
# three with silence to trim.
LENGTHS = (5000, 13001)
HERE = Path(__file__).parent


def _clips() -> list[np.ndarray]:
    return random_clips(LENGTHS) + clips_with_silence()


@pytest.fixture(scope="module")
def served(exports, tmp_path_factory) -> dict[str, np.ndarray]:
    """Scores from a fresh interpreter that imports only tensorflow and numpy."""
    tmp = tmp_path_factory.mktemp("served")
    np.savez(tmp / "clips.npz", **{f"clip{k}": c for k, c in enumerate(_clips())})
    subprocess.run([sys.executable, str(HERE / "serve_check.py"), str(tmp / "clips.npz"), str(tmp / "out.npz"),
                    str(exports["mean"]), str(exports["stacked"])], check=True, cwd=tmp,
                   env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})
    return dict(np.load(tmp / "out.npz"))


@pytest.fixture(scope="module")
def member_scores(tiny_runs) -> np.ndarray:
    """(clips, classes, members): the library's own predictions of the test clips."""
    return np.stack([library_scores(run, _clips()) for run in tiny_runs], axis=-1)


def _per_clip(served: dict[str, np.ndarray], k: int) -> np.ndarray:
    return np.concatenate([served[f"scores_{k}_clip{i}"] for i in range(len(_clips()))])


def test_tf_only_load_matches_library_mean_of_members(tiny_runs, served, member_scores) -> None:
    expected = member_scores.mean(axis=-1)
    got = _per_clip(served, 0)
    assert got.shape == (len(_clips()), len(load_run(tiny_runs[0]).classes))
    # Clips with leading/trailing silence too: the graph trims them as the cache does.
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert list(served["labels_0"]) == list(load_run(tiny_runs[0]).classes.names)


def test_padded_batch_scores_every_clip_as_alone(served) -> None:
    """Clips of five lengths in one zero-padded request: each row cropped, trimmed and measured on its own."""
    for k in (0, 1):
        np.testing.assert_allclose(served[f"padded_{k}"], _per_clip(served, k), atol=1e-5)


@pytest.fixture(scope="module")
def untrimmed(tiny_runs, exports, tmp_path_factory) -> Path:
    """The first member exported with trim=False into a model base path already holding versions 1 and 7."""
    base = tmp_path_factory.mktemp("versions")
    shutil.copytree(exports["mean"], base / "1")
    (base / "7").mkdir()
    return export_run(tiny_runs[:1], base, trim=False)


def test_trimming_matters_for_these_clips(untrimmed, member_scores) -> None:
    """Untrimmed, the silence clips score differently: the parity above really checks the in-graph trim."""
    serve = tf.saved_model.load(str(untrimmed)).signatures["serving_default"]
    got = np.concatenate([serve(waveform=tf.constant(c[None]))["scores"].numpy() for c in clips_with_silence()])
    assert np.abs(got - member_scores[len(LENGTHS):, :, 0]).max() > 1e-3


def test_stacked_export_applies_every_stacker_fold(served, member_scores, stacker_folds) -> None:
    expected = np.mean([m.predict(member_scores, verbose=0) for m in stacker_folds], axis=0)
    got = _per_clip(served, 1)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.abs(got - member_scores.mean(axis=-1)).max() > 1e-3  # the stacker really changed the blend


def test_saved_model_cli_lists_batch_major_signatures(exports) -> None:
    cli = Path(sys.executable).parent / "saved_model_cli"
    if not cli.exists():
        pytest.skip(f"{cli}: not installed next to the interpreter")
    shown = subprocess.run([str(cli), "show", "--dir", str(exports["mean"]), "--all"], check=True,
                           capture_output=True, text=True).stdout
    default = shown[shown.index("signature_def['serving_default']"):]
    default = default[:default.index("signature_def[", 10)] if "signature_def[" in default[10:] else default
    for expected in ("inputs['waveform']", "shape: (-1, -1)", "outputs['scores']", "shape: (-1, 10)"):
        assert expected in default, expected
    assert "outputs['labels']" not in default  # every output of a scoring signature is batch-major
    metadata = shown[shown.index("signature_def['metadata']"):]
    assert "outputs['labels']" in metadata and "dtype: DT_STRING" in metadata


def test_each_export_is_a_new_version_folder(tiny_runs, exports, untrimmed) -> None:
    """TF Serving polls the base path: a new export never overwrites the version it is serving."""
    base = untrimmed.parent
    assert exports["mean"].name == "1"
    assert untrimmed.name == "8" and (untrimmed / "saved_model.pb").exists()  # after the highest number
    assert (base / "1" / "saved_model.pb").exists()
    assert [p.name for p in base.iterdir() if p.name.startswith(".")] == []  # no staging folder left
    labels = (exports["mean"] / "assets.extra" / "labels.txt").read_text().splitlines()
    assert labels == list(load_run(tiny_runs[0]).classes.names)


def test_full_length_member_matches_library(tiny_runs, tmp_path) -> None:
    """A ``tta = "full"`` member: whole clips, padded to 1 s when shorter, global features from the clip."""
    recipe = tiny_recipe("tiny_full", "v1mix", use_global_features=True)
    recipe = type(recipe)(**{**recipe.__dict__, "train": type(recipe.train)(**{**recipe.train.__dict__, "tta": "full"})})
    source, run_dir = tiny_runs[0], tmp_path / "run"
    (run_dir / "fold0").mkdir(parents=True)
    for name in ("classes.json", "task.json", "class_priors.json"):
        shutil.copy(source / name, run_dir / name)
    (run_dir / "recipe.toml").write_text(tomli_w.dumps(to_dict(recipe)))
    (run_dir / "fold0" / "done.json").write_text("{}")
    model = build_model(recipe, len(load_run(source).classes), variable_length=True)
    model.save(run_dir / "fold0" / "best.keras")

    clips = random_clips((3000, 11000), seed=5)
    serve = tf.saved_model.load(str(export_run([run_dir], tmp_path / "out"))).signatures["serving_default"]
    got = np.concatenate([serve(waveform=tf.constant(c[None]))["scores"].numpy() for c in clips])
    # One clip per library call: predict_full_length zero-pads a batch to its longest clip.
    expected = np.concatenate([library_scores(run_dir, [c]) for c in clips])
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_incompatible_runs_and_stacks_fail_clearly(tiny_runs, stack_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match="stacker was trained on runs"):
        export_run(tiny_runs[:1], tmp_path / "a", stack_dir)
    other = tmp_path / "other_rate"
    shutil.copytree(tiny_runs[0], other, ignore=shutil.ignore_patterns("*.keras", "tensorboard", "plots"))
    recipe = load_run(other).recipe
    faster = type(recipe.audio)(**{**recipe.audio.__dict__, "sample_rate": 16000})
    (other / "recipe.toml").write_text(tomli_w.dumps(to_dict(type(recipe)(**{**recipe.__dict__, "audio": faster}))))
    with pytest.raises(ValueError, match="sample rate 16000 Hz differs"):
        export_run([tiny_runs[0], other], tmp_path / "b")


def test_variable_length_export_to_tflite_names_the_unsupported_op(exports, tmp_path) -> None:
    from freesound_tf.export import TFLiteConversionError, convert_tflite

    # The tiny `se` member's GRU branch needs a static batch (fixed-length export) for TFLite.
    with pytest.raises(TFLiteConversionError, match=r"TFLite builtins lack tf\.TensorList\w+.*--tflite-samples"):
        convert_tflite(exports["mean"], tmp_path / "model.tflite")
    assert not (tmp_path / "model.tflite").exists()


@pytest.mark.parametrize("choice", [{"kind": "blend", "name": "geometric_mean"}, {"kind": "member", "name": "second"}])
def test_export_of_a_stack_serves_the_ensemble_the_stack_chose(choice, tiny_runs, stack_dir, member_scores,
                                                                tmp_path) -> None:
    """`freesound-tf stack` may submit a blend or one member instead of its stacker; the export follows."""
    spec = json.loads((stack_dir / "stack.json").read_text())
    spec["members"][1]["name"] = "second"
    chose = tmp_path / "stack"
    shutil.copytree(stack_dir, chose)
    (chose / "stack.json").write_text(json.dumps({**spec, "choice": choice}))
    padded = tf.saved_model.load(str(export_run([], tmp_path / "out", chose))).signatures["padded"]
    clips = _clips()
    lengths = np.array([len(c) for c in clips], np.int32)
    batch = np.zeros((len(clips), lengths.max()), np.float32)
    for row, clip in enumerate(clips):
        batch[row, :len(clip)] = clip
    got = padded(waveform=tf.constant(batch), lengths=tf.constant(lengths))["scores"].numpy()
    expected = (np.exp(np.log(np.maximum(member_scores, 1e-7)).mean(axis=-1)) if choice["kind"] == "blend"
                else member_scores[..., 1])
    np.testing.assert_allclose(got, expected, atol=1e-4)
