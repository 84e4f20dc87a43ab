"""Clip-level predictions: crop TTA or full length over cached clips, whole runs over audio folders.

TTA modes (``train.tta``): ``crops`` (``pipeline.eval_crops`` fixed crops), ``full`` (whole clips) and
``multi_length`` (for each of ``tta_lengths``, ``tta_random_crops`` crops at :func:`tta_positions`).
The crops of a clip combine by ``train.tta_combine``: arithmetic or geometric mean (:func:`combine_tta`).
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from freesound_tf.config import Recipe
from freesound_tf.data.pipeline import (
    CacheReader, _read_side_inputs, crop_clip, eval_dataset, full_length_dataset, restore_order,
)
from freesound_tf.metrics import top_k_labels

log = logging.getLogger(__name__)

# What soundfile or the audioread fallback decode; other files in a folder are ignored.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".m4a")
GMEAN_EPS = 1e-7  # scores are floored here before the log of the geometric mean (sigmoids reach 0 in float32)


def model_inputs(recipe: Recipe) -> tuple[str, ...]:
    """Names of the pipeline inputs the recipe's model consumes."""
    names = ["waveform"]
    if recipe.model.use_global_features:
        names.append("global_features")
    if recipe.model.use_length:
        names.append("length")
    return tuple(names)


def softmax_output(model) -> bool:
    """Whether the model's ``scores`` layer is a softmax (single-label task), which ``combine_tta`` renormalises."""
    try:
        layer = model.get_layer("scores")
    except ValueError:
        return False
    return getattr(getattr(layer, "activation", None), "__name__", "") == "softmax"


def combine_tta(scores: np.ndarray, how: str = "mean", softmax: bool = False) -> np.ndarray:
    """(n_tta, clips, C) scores of every TTA crop -> (clips, C); one crop is returned unchanged.

    ``mean``: arithmetic mean. ``gmean``: exp(mean(log(max(p, GMEAN_EPS)))). With ``softmax`` the geometric
    mean is renormalised to sum 1 per clip: it then equals the softmax of the mean logits (a product of
    experts) and stays a distribution; sigmoid scores are independent per class and are not renormalised.
    Neither changes a clip's class ranking (lwlrap, MAP@3).
    """
    scores = np.asarray(scores, np.float32)
    if len(scores) == 1:
        return scores[0]
    if how == "mean":
        return scores.mean(axis=0)
    if how != "gmean":
        raise ValueError(f"train.tta_combine: unknown {how!r}; use 'mean' or 'gmean'")
    combined = np.exp(np.log(np.maximum(scores, GMEAN_EPS)).mean(axis=0))
    return combined / combined.sum(axis=-1, keepdims=True) if softmax else combined


def tta_positions(n_crops: int, seed: int, length_index: int) -> np.ndarray:
    """float32 window positions in [0, 1) of the random crops of ``tta_lengths[length_index]``.

    Drawn once from ``seed``, the same relative positions for every clip (each clip still gets its own
    sample offsets): a clip's prediction is deterministic, and the export bakes the same positions
    into its graph.
    """
    return np.random.default_rng([seed, length_index]).random(n_crops).astype(np.float32)


def predict_windows(model, cache: CacheReader, indices: np.ndarray, crop_len: int, positions: np.ndarray,
                    batch_size: int, inputs: Sequence[str] = ("waveform",)) -> np.ndarray:
    """(positions, clips, C) scores of the ``crop_len`` windows of every clip at ``positions``
    (placed by :func:`crop_clip`, short clips zero-padded); about ``batch_size`` windows per model call."""
    per_batch = max(1, batch_size // len(positions))
    out = []
    for start in range(0, len(indices), per_batch):
        rows = indices[start:start + per_batch]
        batch = {"waveform": np.stack([crop_clip(cache, int(r), crop_len, float(p)) for p in positions for r in rows])}
        side = _read_side_inputs(cache, rows, inputs)
        batch.update({k: np.concatenate([v] * len(positions)) for k, v in side.items()})
        scores = np.asarray(model.predict_on_batch({k: batch[k] for k in inputs}))
        out.append(scores.reshape(len(positions), len(rows), -1))
    return np.concatenate(out, axis=1)


def predict_crops(model, cache: CacheReader, indices: np.ndarray, crop_seconds: float, sample_rate: int,
                  batch_size: int, n_crops: int = 3, inputs: Sequence[str] = ("waveform",),
                  combine: str = "mean") -> np.ndarray:
    """The model's scores over ``n_crops`` fixed crops (start / middle / end) per clip, combined by ``combine``."""
    indices = np.asarray(indices, np.int64)
    if len(indices) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    ds = eval_dataset(cache, indices, crop_seconds, sample_rate, batch_size, n_crops, inputs=inputs)
    predictions = model.predict(ds, verbose=0)  # clip-major
    per_crop = np.swapaxes(predictions.reshape(-1, n_crops, predictions.shape[-1]), 0, 1)
    return combine_tta(per_crop, combine, softmax_output(model))


def predict_multi_length(model, cache: CacheReader, indices: np.ndarray, lengths: Sequence[float], n_crops: int,
                         seed: int, sample_rate: int, batch_size: int, inputs: Sequence[str] = ("waveform",),
                         combine: str = "mean") -> np.ndarray:
    """Seed 002's TTA: for each of ``lengths`` (seconds), ``n_crops`` crops at :func:`tta_positions`;
    all of a clip's crops combined by ``combine``. The model must accept variable-length input."""
    indices = np.asarray(indices, np.int64)
    if len(indices) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    per_crop = [predict_windows(model, cache, indices, int(round(seconds * sample_rate)),
                                tta_positions(n_crops, seed, k), batch_size, inputs)
                for k, seconds in enumerate(lengths)]
    return combine_tta(np.concatenate(per_crop), combine, softmax_output(model))


def predict_full_length(model, cache: CacheReader, indices: np.ndarray, sample_rate: int, batch_size: int,
                        inputs: Sequence[str] = ("waveform",)) -> np.ndarray:
    """Scores of whole clips (the model must accept variable-length input), length-bucketed."""
    indices = np.asarray(indices, np.int64)
    if len(indices) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    ds, order = full_length_dataset(cache, indices, sample_rate, batch_size, inputs=inputs)
    # Batches differ in length: call the model per batch instead of letting predict() retrace.
    scores = np.concatenate([np.asarray(model(batch, training=False)) for batch in ds])
    return restore_order(scores, order, indices)


def predict_clips(model, cache: CacheReader, indices: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Clip scores with the recipe's test-time augmentation (``train.tta``)."""
    inputs = model_inputs(recipe)
    train = recipe.train
    if train.tta == "full":
        return predict_full_length(model, cache, indices, recipe.audio.sample_rate, recipe.pipeline.batch_size,
                                   inputs=inputs)
    if train.tta == "multi_length":
        return predict_multi_length(model, cache, indices, train.tta_lengths, train.tta_random_crops,
                                    recipe.pipeline.seed, recipe.audio.sample_rate, recipe.pipeline.batch_size,
                                    inputs=inputs, combine=train.tta_combine)
    return predict_crops(model, cache, indices, recipe.pipeline.crop_seconds, recipe.audio.sample_rate,
                         recipe.pipeline.batch_size, recipe.pipeline.eval_crops, inputs=inputs,
                         combine=train.tta_combine)


@dataclass(frozen=True)
class FolderTable:
    """Every audio file of a folder, as a cacheable split."""

    name: str
    audio_dir: Path
    fnames: list[str]

    @classmethod
    def scan(cls, audio_dir: str | Path) -> FolderTable:
        audio_dir = Path(audio_dir)
        if not audio_dir.is_dir():
            raise FileNotFoundError(f"{audio_dir}: no such folder; pass the folder holding the clips to score")
        files = sorted(p.name for p in audio_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        fnames = [name for name in files if Path(name).suffix.lower() in AUDIO_SUFFIXES]
        if not fnames:
            raise FileNotFoundError(f"{audio_dir}: no audio files ({', '.join(AUDIO_SUFFIXES)}); "
                                    "pass the folder holding the clips to score")
        others = [name for name in files if Path(name).suffix.lower() not in AUDIO_SUFFIXES]
        if others:
            named = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            log.warning("%s: %d file(s) without an audio extension (%s) are not scored: %s; rename them "
                        "if they are audio", audio_dir, len(others), " ".join(AUDIO_SUFFIXES), named)
        # The cache name follows the folder, so two folders never share (or clobber) a cache.
        digest = hashlib.sha1(str(audio_dir.resolve()).encode()).hexdigest()[:10]
        return cls(f"predict-{digest}", audio_dir, fnames)

    def paths(self) -> list[Path]:
        return [self.audio_dir / f for f in self.fnames]


def predict_folder(run_dir: str | Path, audio_dir: str | Path, work_dir: str | Path,
                   workers: int | None = None, progress: bool = True):
    """Scores of every audio file in ``audio_dir``: mean over the run's fold models.

    Returns ``(run, fnames, scores, skipped)`` with a row for every audio file (sorted by name);
    ``skipped`` lists (fname, reason) of clips that could not be decoded, whose rows hold the run's
    class priors (see ``freesound_tf.fallback``; also in the cache report). Clips may have any
    length, rate and channels. A folder without any decodable clip is an error.
    """
    import keras

    import freesound_tf.models  # noqa: F401  (registers the custom layers load_model needs, kapre's too)
    from freesound_tf.data.cache import WaveformCache, build_cache, report_path
    from freesound_tf.fallback import complete_rows
    from freesound_tf.training.run_folder import load_run, read_priors

    run = load_run(run_dir)
    table = FolderTable.scan(audio_dir)
    cache_file = build_cache(table, run.recipe.audio, Path(work_dir) / "cache", workers=workers, progress=progress)
    with WaveformCache(cache_file) as cache:
        wanted = set(table.fnames)
        rows = np.array([i for i, f in enumerate(cache.fnames) if f in wanted], np.int64)
        fnames = [cache.fnames[i] for i in rows]
        skipped = [(f, reason) for f, reason in cache.skipped if f in wanted]
        if not len(rows):
            raise ValueError(f"{audio_dir}: none of its {len(table.fnames)} audio file(s) could be decoded "
                             f"(e.g. {skipped[0][0]}: {skipped[0][1]}); see {report_path(cache_file)}")
        priors = read_priors(run.run_dir, run.classes) if skipped else None
        scores = np.zeros((len(rows), len(run.classes)), np.float32)
        for path in run.fold_models:
            model = keras.models.load_model(path, compile=False)
            scores += predict_clips(model, cache, rows, run.recipe) / len(run.fold_models)
        if skipped:  # every file gets a row
            scores, fnames = complete_rows(table.fnames, fnames, scores, priors), list(table.fnames)
    return run, fnames, scores, skipped


def write_submission(path: str | Path, fnames: Sequence[str], scores: np.ndarray, classes: Sequence[str],
                     multilabel: bool) -> None:
    """Kaggle format: FAT2019 ``fname`` + one score column per class; FAT2018 ``fname,label`` top 3."""
    if multilabel:
        table = pd.DataFrame(scores, columns=list(classes))
        table.insert(0, "fname", list(fnames))
    else:
        table = pd.DataFrame({"fname": list(fnames), "label": top_k_labels(scores, list(classes), 3)})
    table.to_csv(path, index=False, float_format="%.6f")
