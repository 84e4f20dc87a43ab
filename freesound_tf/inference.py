"""Clip-level predictions: crop TTA or full length over cached clips, whole runs over audio folders."""
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
    CacheReader, average_crops, eval_dataset, full_length_dataset, restore_order,
)
from freesound_tf.metrics import top_k_labels

log = logging.getLogger(__name__)

# What soundfile or the audioread fallback decode; other files in a folder are ignored.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".m4a")


def model_inputs(recipe: Recipe) -> tuple[str, ...]:
    """Names of the pipeline inputs the recipe's model consumes."""
    names = ["waveform"]
    if recipe.model.use_global_features:
        names.append("global_features")
    if recipe.model.use_length:
        names.append("length")
    return tuple(names)


def predict_crops(model, cache: CacheReader, indices: np.ndarray, crop_seconds: float, sample_rate: int,
                  batch_size: int, n_crops: int = 3, inputs: Sequence[str] = ("waveform",)) -> np.ndarray:
    """Mean of the model's scores over ``n_crops`` fixed crops (start / middle / end) per clip."""
    indices = np.asarray(indices, np.int64)
    if len(indices) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    ds = eval_dataset(cache, indices, crop_seconds, sample_rate, batch_size, n_crops, inputs=inputs)
    return average_crops(model.predict(ds, verbose=0), n_crops)


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
    if recipe.train.tta == "full":
        return predict_full_length(model, cache, indices, recipe.audio.sample_rate, recipe.pipeline.batch_size,
                                   inputs=inputs)
    return predict_crops(model, cache, indices, recipe.pipeline.crop_seconds, recipe.audio.sample_rate,
                         recipe.pipeline.batch_size, recipe.pipeline.eval_crops, inputs=inputs)


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
        fnames = sorted(p.name for p in audio_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        if not fnames:
            raise FileNotFoundError(f"{audio_dir}: no audio files ({', '.join(AUDIO_SUFFIXES)}); "
                                    "pass the folder holding the clips to score")
        # The cache name follows the folder, so two folders never share (or clobber) a cache.
        digest = hashlib.sha1(str(audio_dir.resolve()).encode()).hexdigest()[:10]
        return cls(f"predict-{digest}", audio_dir, fnames)

    def paths(self) -> list[Path]:
        return [self.audio_dir / f for f in self.fnames]


def predict_folder(run_dir: str | Path, audio_dir: str | Path, work_dir: str | Path,
                   workers: int | None = None, progress: bool = True):
    """Scores of every readable clip in ``audio_dir``: mean over the run's fold models.

    Returns ``(run, fnames, scores, skipped)``; ``skipped`` lists (fname, reason) of clips that
    could not be decoded (also in the cache report). Clips may have any length, rate and channels.
    """
    import keras

    from freesound_tf.data.cache import WaveformCache, build_cache
    from freesound_tf.training.run_folder import load_run

    run = load_run(run_dir)
    table = FolderTable.scan(audio_dir)
    cache_file = build_cache(table, run.recipe.audio, Path(work_dir) / "cache", workers=workers, progress=progress)
    with WaveformCache(cache_file) as cache:
        wanted = set(table.fnames)
        rows = np.array([i for i, f in enumerate(cache.fnames) if f in wanted], np.int64)
        fnames = [cache.fnames[i] for i in rows]
        skipped = [(f, reason) for f, reason in cache.skipped if f in wanted]
        scores = np.zeros((len(rows), len(run.classes)), np.float32)
        for path in run.fold_models:
            model = keras.models.load_model(path, compile=False)
            scores += predict_clips(model, cache, rows, run.recipe) / len(run.fold_models)
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
