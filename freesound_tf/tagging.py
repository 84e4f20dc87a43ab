"""Score raw audio with a trained run or an exported SavedModel: clip scores, top-k tags, folders.

* :func:`predict_waveforms` (``RunInfo.predict``): a run folder's fold models, with the library's own
  trimming, TTA and fold mean, on arrays in memory.
* :class:`SavedModelScorer`: an export of ``freesound-tf export`` (TensorFlow only), its labels and
  sample rate read from the ``metadata`` signature; clips of different lengths go in padded batches.
* :func:`score_folder`: every audio file of a folder, decoded a chunk at a time, with either.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from freesound_tf.data.audio import AudioDecodeError, load_audio
from freesound_tf.data.memory import ClipsInMemory, as_clip_list, resample_clips
from freesound_tf.inference import FolderTable, predict_clips
from freesound_tf.training.run_folder import RunInfo

PADDED_BATCH_SAMPLES = 8_000_000  # samples per padded request (32 MB of float32)


def predict_waveforms(run: RunInfo, waveforms: np.ndarray | Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
    """(clips, classes) float32 scores of mono clips at ``sample_rate`` with the run's fold models: each
    clip resampled to the recipe's rate, trimmed, scored with the recipe's TTA, then the fold mean."""
    clips = ClipsInMemory.resampled(waveforms, sample_rate, run.recipe.audio)
    rows = np.arange(len(clips.clips))
    if not len(rows):
        return np.zeros((0, len(run.classes)), np.float32)
    return np.mean([predict_clips(model, clips, rows, run.recipe) for model in run.models], axis=0).astype(np.float32)


class Scorer(Protocol):
    """What :func:`score_folder` needs: a run (``RunInfo``) or a :class:`SavedModelScorer`."""

    class_names: list[str]
    multilabel: bool

    def predict(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> np.ndarray: ...


class SavedModelScorer:
    """A SavedModel written by ``freesound-tf export`` (a version folder or the model base path, whose
    newest version is taken), loaded with TensorFlow alone."""

    def __init__(self, path: str | Path) -> None:
        import tensorflow as tf

        from freesound_tf.export.serving import METADATA_SIGNATURE, PADDED_SIGNATURE, latest_version

        self.path = latest_version(path)
        self._loaded = tf.saved_model.load(str(self.path))  # keeps the signatures' variables alive
        signatures = self._loaded.signatures
        if METADATA_SIGNATURE not in signatures or PADDED_SIGNATURE not in signatures:
            raise ValueError(f"{self.path}: no {METADATA_SIGNATURE!r}/{PADDED_SIGNATURE!r} signature (a TFLite-only "
                             "or older export); re-export it with `freesound-tf export`")
        metadata = {k: v.numpy() for k, v in signatures[METADATA_SIGNATURE]().items()}
        self.class_names = [name.decode() for name in metadata["labels"]]
        self.sample_rate = int(metadata["sample_rate"])
        self.multilabel = bool(metadata["multilabel"])
        if "priors" not in metadata:
            raise ValueError(f"{self.path}: no class priors in its metadata (an older export); re-export it with "
                             "`freesound-tf export`")
        self.priors = metadata["priors"].astype(np.float32)
        self._padded = signatures[PADDED_SIGNATURE]

    def predict(self, waveforms: np.ndarray | Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        """(clips, classes) scores of mono clips at ``sample_rate`` (resampled to the model's rate)."""
        import tensorflow as tf

        clips = resample_clips(as_clip_list(waveforms), sample_rate, self.sample_rate)
        scores = np.zeros((len(clips), len(self.class_names)), np.float32)
        for rows in _length_batches([len(c) for c in clips], PADDED_BATCH_SAMPLES):
            lengths = np.array([len(clips[r]) for r in rows], np.int32)
            batch = np.zeros((len(rows), lengths.max()), np.float32)
            for k, r in enumerate(rows):
                batch[k, :lengths[k]] = clips[r]
            out = self._padded(waveform=tf.constant(batch), lengths=tf.constant(lengths))
            scores[rows] = out["scores"].numpy()
        return scores


def _length_batches(lengths: list[int], max_samples: int) -> Iterator[np.ndarray]:
    """Row groups of similar lengths whose padded size stays under ``max_samples`` (at least one row each)."""
    order = np.argsort(lengths, kind="stable")
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and lengths[order[stop]] * (stop + 1 - start) <= max_samples:
            stop += 1
        yield order[start:stop]
        start = stop


@dataclass
class FolderScores:
    """Scores of every readable file of a folder (``fnames`` sorted) and the files that could not be read."""

    fnames: list[str]
    scores: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)


def score_folder(scorer: Scorer, audio_dir: str | Path, sample_rate: int, chunk: int = 64) -> FolderScores:
    """Decode and score the audio files of ``audio_dir``, ``chunk`` files at a time (memory stays flat).

    ``sample_rate``: the scorer's rate (files are decoded straight to it). Unreadable files are skipped
    and listed with the reason.
    """
    table = FolderTable.scan(audio_dir)
    fnames, parts, skipped = [], [], []
    for start in range(0, len(table.fnames), chunk):
        names, clips = [], []
        for fname in table.fnames[start:start + chunk]:
            try:
                clips.append(load_audio(table.audio_dir / fname, sample_rate))
                names.append(fname)
            except AudioDecodeError as err:
                skipped.append((fname, err.reason))
        if clips:
            parts.append(scorer.predict(clips, sample_rate))
            fnames += names
    scores = np.concatenate(parts) if parts else np.zeros((0, len(scorer.class_names)), np.float32)
    return FolderScores(fnames, scores, skipped)


def write_complete_submission(out: str | Path, fnames: Sequence[str], result: FolderScores, scorer: SavedModelScorer,
                              audio_dir: str | Path) -> list[tuple[str, str]]:
    """A Kaggle CSV with a row per fname of ``fnames``: the scores of ``result``, the model's class
    priors for a clip that could not be decoded or is missing (listed in ``<out>.fallback.csv`` and a
    warning, see :mod:`freesound_tf.fallback`). Returns those (fname, reason) rows."""
    from freesound_tf.fallback import complete_rows, warn_fallback, write_fallback_csv
    from freesound_tf.inference import write_submission

    reasons = dict(result.skipped)
    scored = set(result.fnames)
    fallback = [(f, reasons.get(f, f"not in {audio_dir}")) for f in fnames if f not in scored]
    write_submission(out, fnames, complete_rows(fnames, result.fnames, result.scores, scorer.priors),
                     scorer.class_names, scorer.multilabel)
    listed = Path(out).with_name(f"{Path(out).stem}.fallback.csv")
    listed.unlink(missing_ok=True)  # never leave the list of an earlier prediction beside this one
    if fallback:
        write_fallback_csv(listed, fallback)
        warn_fallback(str(out), fallback, listed)
    return fallback


def top_k(scores: np.ndarray, class_names: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    """Per clip, the ``k`` best (class, score) pairs, best first."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(class_names[c], float(row[c])) for c in best] for row, best in zip(scores, order)]
