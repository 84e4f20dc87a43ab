"""Export finished runs (and optionally their stacker) as one TF Serving SavedModel.

Signatures (every output batch-major, so TF Serving's REST row format works):

* ``serving_default``: ``waveform`` float32 [batch, samples] (mono, at the members' sample rate,
  each row one whole clip) -> ``scores`` float32 [batch, classes];
* ``padded``: ``waveform`` plus ``lengths`` int32 [batch], the samples of each row that belong to
  its clip (clips of different lengths in one zero-padded batch);
* ``metadata``: no inputs -> ``labels`` string [classes] (score column order), ``priors`` float32
  [classes] (the class priors: the documented score of a clip that cannot be decoded),
  ``sample_rate`` int32 and ``multilabel`` bool scalars.

Inside the graph, as the library scores cached clips: samples clipped to [-1, 1], silence trimmed
(``audio.trim_top_db``, unless ``trim=False``), global statistics, length, TTA crops, the mean over
every fold model and the blend of members (with ``stack_dir``: the ensemble ``freesound-tf stack``
chose to submit, a member, a blend or the stacker; without: the plain mean). Bad requests fail
with a clear message: wrong rank, NaN/Inf samples, lengths out of range; an empty batch returns
[0, classes]. The model needs only TensorFlow to load.

Layout written to ``out_dir`` (TF Serving's model base path); every export is a new version::

    out_dir/<N>/                              the SavedModel, N = 1, 2, 3, ...
    out_dir/<N>/assets.extra/labels.txt       class names, one per line (score column order)
    out_dir/<N>/assets.extra/export.json      members, classes, sample rate, TTA, signatures
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from freesound_tf.export.member_graph import MemberGraph
from freesound_tf.stacking.blends import GEOMETRIC_FLOOR
from freesound_tf.export.tflite import tflite_compatible_model
from freesound_tf.training.run_folder import RunInfo, load_run, read_priors

SIGNATURE = "serving_default"
PADDED_SIGNATURE = "padded"
METADATA_SIGNATURE = "metadata"
EXTRA_DIR = "assets.extra"  # files next to the graph that TF Serving ignores


@dataclass
class StackerGraph:
    """The stacker of ``freesound-tf stack``: member scores -> stacked scores, mean over its fold models."""

    models: list[keras.Model]

    def scores(self, member_scores: list[tf.Tensor]) -> tf.Tensor:
        stacked = tf.stack(member_scores, axis=-1)  # (batch, classes, members), stack.json's member order
        return tf.add_n([m(stacked, training=False) for m in self.models]) / len(self.models)


def _check_compatible(runs: list[RunInfo]) -> None:
    first = runs[0]
    for run in runs[1:]:
        if run.recipe.audio.sample_rate != first.recipe.audio.sample_rate:
            raise ValueError(f"{run.run_dir}: sample rate {run.recipe.audio.sample_rate} Hz differs from "
                             f"{first.run_dir} ({first.recipe.audio.sample_rate} Hz); export runs of one rate together")
        if list(run.classes.names) != list(first.classes.names):
            raise ValueError(f"{run.run_dir}: classes differ from {first.run_dir}; "
                             "export only runs trained on the same class map")


def _read_stack(stack_dir: Path, run_dirs: list[Path]) -> tuple[list[Path], Callable, list[keras.Model], dict]:
    """The members the stack submits (run folders in its channel order), how it combines their scores
    (the ensemble ``freesound-tf stack`` chose: ``stack.json`` "choice", the stacker when absent), the
    stacker models that takes and the spec."""
    spec_file = stack_dir / "stack.json"
    if not spec_file.exists():
        raise FileNotFoundError(f"{spec_file}: missing; pass a folder written by `freesound-tf stack`")
    spec = json.loads(spec_file.read_text())
    members = [Path(m["run_dir"]) for m in spec["members"]]
    if run_dirs and {p.resolve() for p in run_dirs} != {p.resolve() for p in members}:
        raise ValueError(f"{spec_file}: the stacker was trained on runs {', '.join(map(str, members))}; "
                         "pass exactly those with --run, or none to take them from the stack")
    choice = spec.get("choice", {"kind": "stacker", "name": spec.get("name", "stacker")})
    if choice["kind"] == "member":
        return [members[[m["name"] for m in spec["members"]].index(choice["name"])]], _mean, [], spec
    if choice["kind"] == "blend":
        return members, _blend(choice["name"], [m["weight"] for m in spec["members"]]), [], spec
    paths = [stack_dir / name for name in spec["fold_models"]]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: stacker fold model listed in {spec_file} is missing; "
                                    "rerun `freesound-tf stack`")
    stacker = StackerGraph([keras.models.load_model(p, compile=False) for p in paths])
    return members, stacker.scores, stacker.models, spec


def _mean(member_scores: list[tf.Tensor]) -> tf.Tensor:
    return tf.add_n(member_scores) / len(member_scores)


def _blend(name: str, weights: list[float]) -> Callable[[list[tf.Tensor]], tf.Tensor]:
    """The in-graph twin of the blend ``name`` of :func:`freesound_tf.stacking.choice.servable_blends`."""
    if name == "mean":
        return _mean
    if name == "weighted_mean":
        w = [x / sum(weights) for x in weights]
        return lambda scores: tf.add_n([wi * s for wi, s in zip(w, scores)])
    if name == "geometric_mean":
        return lambda scores: tf.exp(_mean([tf.math.log(tf.maximum(s, GEOMETRIC_FLOOR)) for s in scores]))
    raise ValueError(f"stack.json: blend {name!r} cannot be served; rerun `freesound-tf stack`")


def export_run(run_dirs: list[Path], out_dir: Path, stack_dir: Path | None = None, *,
               fixed_samples: int | None = None, trim: bool = True) -> Path:
    """Write one SavedModel scoring raw audio with every fold model of ``run_dirs``.

    With ``stack_dir`` the members and blend are the ensemble that stack chose to submit (a member,
    a blend or its stacker); without, several runs are blended by their plain mean.
    ``trim=False`` leaves silence trimming to the client. ``fixed_samples=N`` exports for TFLite
    instead: ``serving_default`` only, input [1, N], no in-graph trimming or input checks, the STFT
    rebuilt from TFLite builtins (see :mod:`freesound_tf.export.tflite`).
    Returns the new version folder ``out_dir/<N>`` (earlier versions are kept).
    """
    run_dirs = [Path(p) for p in run_dirs]
    combine, stack_spec, stacker_models = _mean, None, []
    if stack_dir is not None:
        run_dirs, combine, stacker_models, stack_spec = _read_stack(Path(stack_dir), run_dirs)
    if not run_dirs:
        raise ValueError("export: no run folder given; pass at least one --run")
    runs = [load_run(p) for p in run_dirs]
    _check_compatible(runs)
    classes = list(runs[0].classes.names)
    if stack_spec is not None and list(stack_spec["classes"]) != classes:
        raise ValueError(f"{stack_dir}/stack.json: classes differ from the member runs'; rerun `freesound-tf stack`")
    if fixed_samples is not None and fixed_samples < 1:
        raise ValueError(f"export: fixed_samples must be >= 1, got {fixed_samples}")
    trim = trim and fixed_samples is None
    members = [MemberGraph(r.recipe.name, r.recipe, r.models, trim=trim) for r in runs]
    if fixed_samples is not None:
        for member in members:
            member.models = [tflite_compatible_model(m) for m in member.models]
    n_classes = len(classes)

    def blend(waveform, lengths=None):
        scores = combine([m.scores(waveform, lengths) for m in members])
        return tf.reshape(scores, (-1, n_classes))  # static class count for clients

    archive = keras.export.ExportArchive()
    for model in [m for member in members for m in member.models] + stacker_models:
        archive.track(model)
    if fixed_samples is not None:
        archive.add_endpoint(SIGNATURE, lambda waveform: {"scores": blend(waveform)},
                             input_signature=[tf.TensorSpec((1, fixed_samples), tf.float32, name="waveform")])
    else:
        waveform_spec = tf.TensorSpec((None, None), tf.float32, name="waveform")

        # Traced once; serving_default calls it with every row's full width.
        @tf.function(input_signature=[waveform_spec, tf.TensorSpec((None,), tf.int32, name="lengths")])
        def padded(waveform, lengths):
            waveform, lengths = checked_inputs(waveform, lengths)
            scores = tf.cond(tf.shape(waveform)[0] > 0, lambda: blend(waveform, lengths),
                             lambda: tf.zeros((0, n_classes), tf.float32))
            return {"scores": tf.ensure_shape(scores, (None, n_classes))}

        def whole_clips(waveform):
            waveform = checked_rank(waveform)
            return padded(waveform, tf.fill(tf.shape(waveform)[:1], tf.shape(waveform)[1]))

        metadata = {"labels": tf.constant(classes, tf.string),
                    "priors": tf.constant(read_priors(runs[0].run_dir, runs[0].classes), tf.float32),
                    "sample_rate": tf.constant(runs[0].recipe.audio.sample_rate, tf.int32),
                    "multilabel": tf.constant(runs[0].multilabel)}
        archive.add_endpoint(SIGNATURE, whole_clips, input_signature=[waveform_spec])
        archive.add_endpoint(PADDED_SIGNATURE, padded)
        archive.add_endpoint(METADATA_SIGNATURE, lambda: {k: tf.identity(v) for k, v in metadata.items()},
                             input_signature=[])
    description = _describe(runs, stack_spec, classes, fixed_samples, trim)
    return _write_new_version(Path(out_dir), archive, classes, description)


def checked_rank(waveform: tf.Tensor) -> tf.Tensor:
    """``waveform`` after a run-time check that it is [batch, samples]: a served request can hold any
    shape. (EnsureShape runs; a rank computed from the tensor would be folded to the signature's 2.)"""
    return tf.ensure_shape(waveform, (None, None), name="waveform_must_be_batch_by_samples")


def checked_inputs(waveform: tf.Tensor, lengths: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The request's clips made safe for the graph: shapes and lengths checked at run time, samples
    past each row's length zeroed, NaN/Inf rejected, samples clipped to [-1, 1] as decoding does."""
    waveform = checked_rank(waveform)
    lengths = tf.ensure_shape(lengths, (None,), name="lengths_must_be_one_per_row")
    batch, width = tf.shape(waveform)[0], tf.shape(waveform)[1]
    checks = [
        tf.debugging.assert_equal(tf.shape(lengths)[0], batch, message="lengths: give one length per waveform row"),
        tf.debugging.assert_positive(tf.where(batch > 0, width, 1),
                                     message="waveform: clips of 0 samples; send at least 1 sample per clip"),
        tf.debugging.assert_greater_equal(lengths, 1, message="lengths: every clip needs at least 1 sample"),
        tf.debugging.assert_less_equal(lengths, width, message="lengths: a length exceeds the waveform width"),
    ]
    with tf.control_dependencies(checks):
        inside = tf.range(width)[None, :] < lengths[:, None]
    waveform = tf.where(inside, waveform, 0.0)
    waveform = tf.debugging.check_numerics(waveform, "waveform: NaN or Inf samples; send finite audio (a clip "
                                                     "that failed to decode?)")
    return tf.clip_by_value(waveform, -1.0, 1.0), lengths


def next_version(out_dir: Path) -> int:
    """1 + the highest numbered version folder in ``out_dir`` (1 for a new folder)."""
    versions = [int(p.name) for p in out_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def latest_version(path: str | Path) -> Path:
    """A SavedModel folder as is, or the highest numbered version inside a model base path."""
    path = Path(path)
    if (path / "saved_model.pb").exists():
        return path
    versions = sorted((p for p in path.glob("*") if p.name.isdigit() and (p / "saved_model.pb").exists()),
                      key=lambda p: int(p.name))
    if not versions:
        raise FileNotFoundError(f"{path}: no SavedModel (saved_model.pb) here or in a numbered version folder; "
                                "pass the folder written by `freesound-tf export`")
    return versions[-1]


def _write_new_version(out_dir: Path, archive: keras.export.ExportArchive, classes: list[str],
                       description: dict) -> Path:
    """Write into a hidden folder, then rename it to the next free version number: TF Serving (which
    polls the base path) never sees a half-written model, and a concurrent export takes the next number."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".export-{uuid.uuid4().hex[:12]}"
    try:
        archive.write_out(str(staging), verbose=False)
        extra = staging / EXTRA_DIR
        extra.mkdir(exist_ok=True)
        (extra / "labels.txt").write_text("".join(f"{name}\n" for name in classes))
        (extra / "export.json").write_text(json.dumps(description, indent=1))
        while True:
            target = out_dir / str(next_version(out_dir))
            try:
                os.rename(staging, target)  # fails if another export just took this number
                return target
            except OSError:
                if not target.exists():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _describe(runs: list[RunInfo], stack_spec: dict | None, classes: list[str], fixed_samples: int | None,
              trim: bool) -> dict:
    if fixed_samples:
        signatures = {SIGNATURE: {"inputs": {"waveform": f"float32 [1, {fixed_samples}], mono (TFLite export)"},
                                  "outputs": {"scores": "float32 [1, classes]"}}}
    else:
        waveform = "float32 [batch, samples], mono, one clip per row"
        signatures = {
            SIGNATURE: {"inputs": {"waveform": waveform}, "outputs": {"scores": "float32 [batch, classes]"}},
            PADDED_SIGNATURE: {"inputs": {"waveform": waveform + " (zero-padded)",
                                          "lengths": "int32 [batch], samples of each row's clip"},
                               "outputs": {"scores": "float32 [batch, classes]"}},
            METADATA_SIGNATURE: {"inputs": {}, "outputs": {"labels": "string [classes]", "sample_rate": "int32 []",
                                                           "multilabel": "bool []"}},
        }
    return {
        "signatures": signatures,
        "sample_rate": runs[0].recipe.audio.sample_rate,
        "multilabel": runs[0].multilabel,
        "trim_top_db": {r.recipe.name: r.recipe.audio.trim_top_db for r in runs} if trim else None,
        "classes": classes,
        "members": [{"name": r.recipe.name, "run_dir": str(r.run_dir), "tta": r.recipe.train.tta,
                     "fold_models": [str(p) for p in r.fold_models]} for r in runs],
        "blend": (stack_spec.get("choice", {"name": "stacker"})["name"] if stack_spec is not None
                  else "mean" if len(runs) > 1 else "single member"),
    }
