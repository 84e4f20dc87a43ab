"""Pseudo-labelling of the noisy split with a model's predictions (seed 000's iterative relabelling).

A model trained on the curated clips scores the noisy clips; :func:`relabel` turns those scores
and the noisy CSV into a new noisy CSV that a recipe can pretrain on (``--noisy-csv``).

Strategies:

- ``scoring_K`` keeps the K clips whose given labels agree best with the model, with their given
  labels. Agreement is the clip's label-ranking average precision (LRAP) of its given labels under
  the predicted scores, i.e. the clip's own term of lwlrap: 1.0 when every given label outranks
  every other class, lower as other classes push in front of them. It uses only the ranking, so
  it does not depend on how calibrated a curated-only model is on noisy audio, and it asks the
  same question as the competition metric. Many clips tie at 1.0; ties go to the higher mean
  predicted score of the given labels (the more confident agreement), then to the earlier CSV row,
  so the same inputs always keep the same clips.
- ``relabelall`` replaces every clip's labels by the classes scored at or above ``threshold``
  (default 0.5, the decision boundary of a sigmoid trained with binary cross-entropy, as in
  ``ClassMap.decode``) and drops the clips with no such class.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from freesound_tf.data.layout import ClassMap, DataValidationError
from freesound_tf.metrics import clip_lrap

STRATEGIES = "scoring_K (e.g. scoring_1000) or relabelall"


def parse_strategy(strategy: str) -> tuple[str, int | None]:
    """``"scoring_1000"`` -> ``("scoring", 1000)``; ``"relabelall"`` -> ``("relabelall", None)``."""
    if strategy == "relabelall":
        return "relabelall", None
    if found := re.fullmatch(r"scoring_(\d+)", strategy):
        return "scoring", int(found.group(1))
    raise ValueError(f"unknown relabel strategy {strategy!r}; use {STRATEGIES}")


def relabel(noisy: pd.DataFrame, predictions: pd.DataFrame, strategy: str, classes: Sequence[str] | ClassMap,
            threshold: float = 0.5, noisy_source: str = "noisy table",
            predictions_source: str = "predictions table") -> pd.DataFrame:
    """New noisy table (``fname``, comma-joined ``labels``) in the row order of ``noisy``.

    ``noisy`` has ``fname`` and ``labels`` (comma-joined names or lists); ``predictions`` has
    ``fname`` and one score column per class. ``*_source`` name the inputs in error messages.
    """
    kind, k = parse_strategy(strategy)
    classes = classes if isinstance(classes, ClassMap) else ClassMap(tuple(classes))
    names = _label_lists(noisy, classes, noisy_source)
    given = classes.encode(names)
    scores = _aligned_scores(noisy, predictions, classes, noisy_source, predictions_source)
    fnames = list(noisy["fname"])
    if kind == "scoring":
        if not 1 <= k <= len(fnames):
            raise ValueError(f"{strategy}: K={k} but {noisy_source} has {len(fnames)} clips; "
                             f"use K between 1 and {len(fnames)} (scoring_{len(fnames)} keeps them all)")
        keep = np.sort(top_agreeing(given, scores, k))
        return pd.DataFrame({"fname": [fnames[i] for i in keep], "labels": [",".join(names[i]) for i in keep]})
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"relabelall: threshold {threshold}; use a score in (0, 1]")
    predicted = [classes.decode(row, threshold=threshold) for row in scores]
    keep = [i for i, labels in enumerate(predicted) if labels]
    if not keep:
        raise ValueError(f"relabelall: no clip of {noisy_source} has a class scored >= {threshold}; "
                         "lower the threshold")
    return pd.DataFrame({"fname": [fnames[i] for i in keep], "labels": [",".join(predicted[i]) for i in keep]})


def agreement(given: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: LRAP of the given multi-hot labels under ``scores``, and their mean score (tie-break)."""
    confidence = (given * scores).sum(axis=1) / np.maximum(given.sum(axis=1), 1)
    return clip_lrap(given, scores), confidence


def top_agreeing(given: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the ``k`` best-agreeing clips, best first (see the module doc for ties)."""
    lrap, confidence = agreement(given, scores)
    order = np.lexsort((np.arange(len(lrap)), -confidence, -lrap))  # last key sorts first
    return order[:k]


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A probability CSV as ``freesound-tf predict`` writes it: ``fname`` + one float column per class."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions CSV not found; write it with `freesound-tf predict "
                                "--run RUN --audio-dir INPUT/train_noisy --out FILE`")
    table = pd.read_csv(path, dtype={"fname": str})
    if "fname" not in table.columns:
        raise DataValidationError(f"{path}:1: no 'fname' column; use the CSV `freesound-tf predict` writes "
                                  "for a FAT2019 run (fname + one score column per class)")
    values = table.drop(columns="fname")
    bad = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
    if bad:
        raise DataValidationError(f"{path}:1: non-numeric score column(s) {bad[:3]}; predictions must hold one "
                                  "probability per class (FAT2018 top-3 submissions cannot be relabelled)")
    non_finite = ~np.isfinite(values.to_numpy(np.float64)).all(axis=1)
    if non_finite.any():
        raise DataValidationError(f"{path}:{int(np.flatnonzero(non_finite)[0]) + 2}: missing or non-finite "
                                  "score; predict the clip again")
    return table


def write_noisy_csv(table: pd.DataFrame, path: str | Path) -> None:
    """Write ``fname,labels`` like ``train_noisy.csv`` (label cells with commas are quoted)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table[["fname", "labels"]].to_csv(path, index=False)


def relabel_summary(noisy: pd.DataFrame, new: pd.DataFrame) -> dict:
    """Clips kept and dropped, and on the kept clips how many label sets changed and labels moved."""
    before = dict(zip(noisy["fname"], map(_name_set, noisy["labels"])))
    after = dict(zip(new["fname"], map(_name_set, new["labels"])))
    changed = [f for f in after if after[f] != before[f]]
    return {"clips": len(before), "kept": len(after), "dropped": len(before) - len(after),
            "changed": len(changed), "labels_added": sum(len(after[f] - before[f]) for f in changed),
            "labels_removed": sum(len(before[f] - after[f]) for f in changed)}


def _name_set(cell: str | Sequence[str]) -> frozenset[str]:
    names = cell.split(",") if isinstance(cell, str) else cell
    return frozenset(n.strip() for n in names)


def _label_lists(noisy: pd.DataFrame, classes: ClassMap, source: str) -> list[list[str]]:
    missing = [c for c in ("fname", "labels") if c not in noisy.columns]
    if missing:
        raise DataValidationError(f"{source}: missing column(s) {missing}; the noisy CSV must be fname,labels")
    duplicated = noisy["fname"][noisy["fname"].duplicated()]
    if len(duplicated):
        raise DataValidationError(f"{source}: duplicate fname {duplicated.iloc[0]!r}; remove the repeated row")
    out = []
    for fname, cell in zip(noisy["fname"], noisy["labels"]):
        names = list(dict.fromkeys(n.strip() for n in (cell.split(",") if isinstance(cell, str) else cell)))
        unknown = [n for n in names if n not in classes]
        if not names or unknown or "" in names:
            raise DataValidationError(f"{source}: clip {fname!r} has labels {cell!r} that are empty or not "
                                      "classes of the class map; fix the row")
        out.append(names)
    return out


def _aligned_scores(noisy: pd.DataFrame, predictions: pd.DataFrame, classes: ClassMap, noisy_source: str,
                    predictions_source: str) -> np.ndarray:
    """(n_noisy, C) scores in noisy row order and class-map column order."""
    if "fname" not in predictions.columns:
        raise DataValidationError(f"{predictions_source}: no 'fname' column; use fname + one score column per class")
    columns = [c for c in predictions.columns if c != "fname"]
    missing, extra = sorted(set(classes.names) - set(columns)), sorted(set(columns) - set(classes.names))
    if missing or extra:
        raise DataValidationError(f"{predictions_source}: class columns do not match the class map (missing "
                                  f"{missing[:3]}, unexpected {extra[:3]}); predict with a run trained on "
                                  "this layout's classes")
    duplicated = predictions["fname"][predictions["fname"].duplicated()]
    if len(duplicated):
        raise DataValidationError(f"{predictions_source}: duplicate fname {duplicated.iloc[0]!r}; "
                                  "keep one row per clip")
    by_name = predictions.set_index("fname")
    absent = [f for f in noisy["fname"] if f not in by_name.index]
    if absent:
        raise DataValidationError(f"{predictions_source}: no scores for {len(absent)} clip(s) of {noisy_source} "
                                  f"(e.g. {absent[0]!r}); predict every noisy clip or remove those rows")
    scores = by_name.loc[list(noisy["fname"]), list(classes.names)].to_numpy(np.float64)
    if not np.isfinite(scores).all():
        bad = noisy["fname"].iloc[int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])]
        raise DataValidationError(f"{predictions_source}: missing or non-finite score for {bad!r}; predict it again")
    return scores
