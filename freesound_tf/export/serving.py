"""Export finished runs (and optionally their stacker) as one TF Serving SavedModel.

The ``serving_default`` signature takes ``waveform`` float32 [batch, samples] (mono, any
length >= 1, at the members' sample rate) and returns ``scores`` float32 [batch, classes] and
``labels`` string [classes]. Global features, length, TTA crops, the mean over every fold model,
and the blend of members (stacker, or plain mean without one) all run inside the graph, so the
model needs only TensorFlow to load and a client sends only audio.

Layout written to ``out_dir`` (TF Serving's model base path)::

    out_dir/1/            the SavedModel (version 1)
    out_dir/export.json   members, classes, sample rate, TTA and the signature, for humans
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from freesound_tf.export.member_graph import MemberGraph
from freesound_tf.export.tflite import tflite_compatible_model
from freesound_tf.training.run_folder import RunInfo, load_run

SAVED_MODEL_VERSION = "1"
SIGNATURE = "serving_default"


@dataclass
class StackerGraph:
    """The stacker of ``freesound-tf stack``: member scores -> stacked scores, mean over its fold models."""

    models: list[keras.Model]

    def scores(self, member_scores: list[tf.Tensor]) -> tf.Tensor:
        stacked = tf.stack(member_scores, axis=-1)  # (batch, classes, members), stack.json's member order
        return tf.add_n([m(stacked, training=False) for m in self.models]) / len(self.models)


def _load_fold_models(run: RunInfo) -> list[keras.Model]:
    import freesound_tf.models  # noqa: F401  (registers the custom layers load_model needs)

    return [keras.models.load_model(p, compile=False) for p in run.fold_models]


def _check_compatible(runs: list[RunInfo]) -> None:
    first = runs[0]
    for run in runs[1:]:
        if run.recipe.audio.sample_rate != first.recipe.audio.sample_rate:
            raise ValueError(f"{run.run_dir}: sample rate {run.recipe.audio.sample_rate} Hz differs from "
                             f"{first.run_dir} ({first.recipe.audio.sample_rate} Hz); export runs of one rate together")
        if list(run.classes.names) != list(first.classes.names):
            raise ValueError(f"{run.run_dir}: classes differ from {first.run_dir}; "
                             "export only runs trained on the same class map")


def _read_stack(stack_dir: Path, run_dirs: list[Path]) -> tuple[list[Path], StackerGraph, dict]:
    """Member run folders in the stacker's channel order, and the stacker (``stack.json`` format 1)."""
    import freesound_tf.stacking  # noqa: F401  (registers the stacker's custom layers)

    spec_file = stack_dir / "stack.json"
    if not spec_file.exists():
        raise FileNotFoundError(f"{spec_file}: missing; pass a folder written by `freesound-tf stack`")
    spec = json.loads(spec_file.read_text())
    members = [Path(m["run_dir"]) for m in spec["members"]]
    if run_dirs and {p.resolve() for p in run_dirs} != {p.resolve() for p in members}:
        raise ValueError(f"{spec_file}: the stacker was trained on runs {', '.join(map(str, members))}; "
                         "pass exactly those with --run, or none to take them from the stack")
    paths = [stack_dir / name for name in spec["fold_models"]]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: stacker fold model listed in {spec_file} is missing; "
                                    "rerun `freesound-tf stack`")
    return members, StackerGraph([keras.models.load_model(p, compile=False) for p in paths]), spec


def export_run(run_dirs: list[Path], out_dir: Path, stack_dir: Path | None = None, *,
               fixed_samples: int | None = None) -> Path:
    """Write one SavedModel scoring raw audio with every fold model of ``run_dirs``.

    Several runs are blended by ``stack_dir``'s stacker when given, else by their plain mean.
    ``fixed_samples=N`` exports for TFLite instead: input [1, N] only, the STFT rebuilt from
    TFLite builtins (see :mod:`freesound_tf.export.tflite`); same scores for clips of N samples.
    Returns the SavedModel folder (``out_dir/1``); an earlier export there is replaced.
    """
    run_dirs = [Path(p) for p in run_dirs]
    stacker, stack_spec = None, None
    if stack_dir is not None:
        run_dirs, stacker, stack_spec = _read_stack(Path(stack_dir), run_dirs)
    if not run_dirs:
        raise ValueError("export: no run folder given; pass at least one --run")
    runs = [load_run(p) for p in run_dirs]
    _check_compatible(runs)
    classes = list(runs[0].classes.names)
    if stack_spec is not None and list(stack_spec["classes"]) != classes:
        raise ValueError(f"{stack_dir}/stack.json: classes differ from the member runs'; rerun `freesound-tf stack`")
    if fixed_samples is not None and fixed_samples < 1:
        raise ValueError(f"export: fixed_samples must be >= 1, got {fixed_samples}")
    members = [MemberGraph(r.recipe.name, r.recipe, _load_fold_models(r)) for r in runs]
    if fixed_samples is not None:
        for member in members:
            member.models = [tflite_compatible_model(m) for m in member.models]
    labels = tf.constant(classes, tf.string)

    def serve(waveform):
        member_scores = [m.scores(waveform) for m in members]
        if stacker is not None:
            scores = stacker.scores(member_scores)
        else:
            scores = tf.add_n(member_scores) / len(member_scores)
        scores = tf.reshape(scores, (-1, len(classes)))  # static class count for clients
        return {"scores": tf.identity(scores, name="scores"), "labels": tf.identity(labels, name="labels")}

    archive = keras.export.ExportArchive()
    for model in [m for member in members for m in member.models] + (stacker.models if stacker else []):
        archive.track(model)
    shape = (None, None) if fixed_samples is None else (1, fixed_samples)
    archive.add_endpoint(SIGNATURE, serve, input_signature=[tf.TensorSpec(shape, tf.float32, name="waveform")])
    out_dir = Path(out_dir)
    saved_model = out_dir / SAVED_MODEL_VERSION
    if saved_model.exists():
        shutil.rmtree(saved_model)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive.write_out(str(saved_model), verbose=False)
    (out_dir / "export.json").write_text(json.dumps(_describe(runs, stack_dir, classes, fixed_samples), indent=1))
    return saved_model


def _describe(runs: list[RunInfo], stack_dir: Path | None, classes: list[str], fixed_samples: int | None) -> dict:
    waveform = (f"float32 [1, {fixed_samples}], mono (fixed-length TFLite export)" if fixed_samples
                else "float32 [batch, samples], mono, any length >= 1, one length per batch")
    return {
        "signature": SIGNATURE,
        "inputs": {"waveform": waveform},
        "outputs": {"scores": "float32 [batch, classes]", "labels": "string [classes]"},
        "sample_rate": runs[0].recipe.audio.sample_rate,
        "classes": classes,
        "members": [{"name": r.recipe.name, "run_dir": str(r.run_dir), "tta": r.recipe.train.tta,
                     "fold_models": [str(p) for p in r.fold_models]} for r in runs],
        "blend": "stacker" if stack_dir is not None else ("mean" if len(runs) > 1 else "single member"),
        "stack_dir": None if stack_dir is None else str(stack_dir),
    }
