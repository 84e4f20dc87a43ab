"""Every clip of a submission gets a row: clips that cannot be decoded are scored with the class priors.

Kaggle rejects a submission that lacks any ``sample_submission.csv`` fname, so a clip whose audio
cannot be read (a damaged file, an unknown format) must not simply vanish. Its row holds the run's
class priors (the mean label of the curated training clips, ``class_priors.json`` of the run
folder): the scores that minimise the expected loss when nothing is known about the clip. Every
such clip is named in a warning and listed, with the reason, in a ``fname,reason`` CSV beside the
scores (``test_fallback.csv`` in run and stack folders, ``<out>.fallback.csv`` beside a
``predict`` submission).
"""
from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from freesound_tf.data.cache import describe_clips
from freesound_tf.locking import atomic_path

log = logging.getLogger(__name__)

FALLBACK_FILE = "test_fallback.csv"


def complete_rows(all_fnames: Sequence[str], fnames: Sequence[str], scores: np.ndarray,
                  priors: np.ndarray) -> np.ndarray:
    """(len(all_fnames), C) scores: the row of ``scores`` for each fname it has, ``priors`` for the others."""
    row = {fname: i for i, fname in enumerate(fnames)}
    out = np.empty((len(all_fnames), len(priors)), np.float32)
    for k, fname in enumerate(all_fnames):
        out[k] = scores[row[fname]] if fname in row else priors
    return out


def write_fallback_csv(path: str | Path, rows: Sequence[tuple[str, str]]) -> None:
    """``fname,reason`` of the clips scored with the priors (a header alone when there are none)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["fname", "reason"])
        writer.writerows(rows)


def read_fallback_csv(path: str | Path) -> list[tuple[str, str]]:
    """Rows written by :func:`write_fallback_csv`; none when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [(row["fname"], row["reason"]) for row in csv.DictReader(f)]


def warn_fallback(what: str, rows: Sequence[tuple[str, str]], listed_in: str | Path) -> None:
    """Log one warning naming the clips of ``what`` that were scored with the class priors."""
    if rows:
        log.warning("%s: %d clip(s) could not be decoded and are scored with the class priors: %s; list: %s",
                    what, len(rows), describe_clips(list(rows)), listed_in)
