"""SavedModel export round trip: TensorFlow-only loading, library parity, CLI listing, TF Serving request."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import tomli_w

from freesound_tf.config import to_dict
from freesound_tf.export import export_run
from freesound_tf.models import build_model
from freesound_tf.training.run_folder import load_run
from tests.conftest import tiny_recipe
from tests.export.helpers import library_scores, random_clips

# 8 kHz, 1 s crops: one clip shorter than a crop (zero-padded crops), one longer (three offsets).
LENGTHS = (5000, 13001)
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def stack_dir(tiny_runs, tmp_path_factory) -> Path:
    """A two-fold stacker in the `freesound-tf stack` format, its fold models made to differ."""
    from freesound_tf.stacking import build_stacker

    out = tmp_path_factory.mktemp("stack")
    classes = list(load_run(tiny_runs[0]).classes.names)
    names = []
    for k in range(2):
        model = build_stacker(len(classes), [1.0, 3.0], shift=0.5 + k)
        dense = model.get_layer("label_correlation")
        dense.kernel.assign(dense.kernel.numpy() + 0.05 * np.random.default_rng(k).standard_normal(dense.kernel.shape))
        model.save(out / f"stacker_fold{k}.keras")
        names.append(f"stacker_fold{k}.keras")
    members = [{"name": p.name, "run_dir": str(p.resolve()), "weight": w} for p, w in zip(tiny_runs, (1.0, 3.0))]
    (out / "stack.json").write_text(json.dumps({"format": 1, "members": members, "classes": classes,
                                                "fold_models": names}))
    return out


@pytest.fixture(scope="module")
def exports(tiny_runs, stack_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    return {"mean": export_run(tiny_runs, root / "mean"), "stacked": export_run([], root / "stacked", stack_dir)}


@pytest.fixture(scope="module")
def served(exports, tmp_path_factory) -> dict[str, np.ndarray]:
    """Scores from a fresh interpreter that imports only tensorflow and numpy."""
    tmp = tmp_path_factory.mktemp("served")
    clips = random_clips(LENGTHS)
    np.savez(tmp / "clips.npz", **{str(len(c)): c for c in clips})
    subprocess.run([sys.executable, str(HERE / "serve_check.py"), str(tmp / "clips.npz"), str(tmp / "out.npz"),
                    str(exports["mean"]), str(exports["stacked"])], check=True, cwd=tmp,
                   env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})
    return dict(np.load(tmp / "out.npz"))


@pytest.fixture(scope="module")
def member_scores(tiny_runs) -> np.ndarray:
    """(clips, classes, members): the library's own predictions of the test clips."""
    return np.stack([library_scores(run, random_clips(LENGTHS)) for run in tiny_runs], axis=-1)


def test_tf_only_load_matches_library_mean_of_members(tiny_runs, served, member_scores) -> None:
    expected = member_scores.mean(axis=-1)
    got = np.concatenate([served[f"scores_0_{n}"] for n in LENGTHS])
    assert got.shape == (2, len(load_run(tiny_runs[0]).classes))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert list(served["labels_0"]) == list(load_run(tiny_runs[0]).classes.names)


def test_stacked_export_applies_every_stacker_fold(stack_dir, served, member_scores) -> None:
    members = member_scores
    folds = [keras.models.load_model(stack_dir / f"stacker_fold{k}.keras") for k in range(2)]
    expected = np.mean([m.predict(members, verbose=0) for m in folds], axis=0)
    got = np.concatenate([served[f"scores_1_{n}"] for n in LENGTHS])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.abs(got - members.mean(axis=-1)).max() > 1e-3  # the stacker really changed the blend


def test_saved_model_cli_lists_the_signature(exports) -> None:
    cli = Path(sys.executable).parent / "saved_model_cli"
    if not cli.exists():
        pytest.skip(f"{cli}: not installed next to the interpreter")
    shown = subprocess.run([str(cli), "show", "--dir", str(exports["mean"]), "--all"], check=True,
                           capture_output=True, text=True).stdout
    section = shown[shown.index("signature_def['serving_default']"):]
    for expected in ("inputs['waveform']", "shape: (-1, -1)", "outputs['scores']", "outputs['labels']",
                     "dtype: DT_STRING"):
        assert expected in section, expected


def test_tf_serving_predict_request_round_trip(exports, tiny_runs) -> None:
    from tensorflow_serving.apis import predict_pb2

    batch = np.stack(random_clips((12000, 12000), seed=3))  # one request batches clips of one length
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "freesound"
    request.model_spec.signature_name = "serving_default"
    request.inputs["waveform"].CopyFrom(tf.make_tensor_proto(batch))
    parsed = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert [d.size for d in parsed.inputs["waveform"].tensor_shape.dim] == [2, 12000]

    serve = tf.saved_model.load(str(exports["mean"])).signatures[parsed.model_spec.signature_name]
    outputs = serve(waveform=tf.constant(tf.make_ndarray(parsed.inputs["waveform"])))
    response = predict_pb2.PredictResponse()
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
    response = predict_pb2.PredictResponse.FromString(response.SerializeToString())
    n_classes = len(load_run(tiny_runs[0]).classes)
    assert [d.size for d in response.outputs["scores"].tensor_shape.dim] == [2, n_classes]
    assert [d.size for d in response.outputs["labels"].tensor_shape.dim] == [n_classes]
    # Rows of a batch are scored independently: the same as two single-clip calls.
    single = np.concatenate([serve(waveform=tf.constant(row[None]))["scores"].numpy() for row in batch])
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["scores"]), single, atol=1e-5)


def test_full_length_member_matches_library(tiny_runs, tmp_path) -> None:
    """A ``tta = "full"`` member: whole clips, padded to 1 s when shorter, global features from the clip."""
    recipe = tiny_recipe("tiny_full", "v1mix", use_global_features=True)
    recipe = type(recipe)(**{**recipe.__dict__, "train": type(recipe.train)(**{**recipe.train.__dict__, "tta": "full"})})
    source, run_dir = tiny_runs[0], tmp_path / "run"
    (run_dir / "fold0").mkdir(parents=True)
    for name in ("classes.json", "task.json"):
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
    with pytest.raises(TFLiteConversionError, match=r"TFLite builtins lack tf\.TensorListReserve.*--tflite-samples"):
        convert_tflite(exports["mean"], tmp_path / "model.tflite")
    assert not (tmp_path / "model.tflite").exists()
