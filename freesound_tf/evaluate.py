"""Score a Kaggle-format submission against a truth CSV: lwlrap, per-class lwlrap, MAP@3."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from freesound_tf.data.layout import ClassMap, DataValidationError
from freesound_tf.metrics import lwlrap, map_at_k, per_class_lwlrap


def _read(path: Path, what: str) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found; pass an existing CSV")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise DataValidationError(f"{path}: not a readable CSV ({str(err).splitlines()[0]}); fix the file") from None
    if "fname" not in table.columns:
        raise DataValidationError(f"{path}:1: no 'fname' column; the first column must be fname")
    return table


def _truth_labels(truth: pd.DataFrame, path: Path) -> list[list[str]]:
    column = "labels" if "labels" in truth.columns else "label" if "label" in truth.columns else None
    if column is None:
        raise DataValidationError(f"{path}:1: needs a 'labels' (FAT2019) or 'label' (FAT2018) column")
    return [[name.strip() for name in cell.split(",") if name.strip()] for cell in truth[column]]


def evaluate_submission(submission_path: str | Path, truth_path: str | Path) -> dict:
    """Scores of a submission. FAT2019 files (fname + a score column per class) get lwlrap, its
    per-class breakdown and, for single-label truth, MAP@3; FAT2018 files (fname, label with the
    space-separated top 3) get MAP@3."""
    submission_path, truth_path = Path(submission_path), Path(truth_path)
    submission, truth = _read(submission_path, "submission"), _read(truth_path, "truth")
    missing = sorted(set(truth["fname"]) - set(submission["fname"]))
    if missing:
        raise DataValidationError(f"{submission_path}: {len(missing)} clip(s) of {truth_path.name} have no row "
                                  f"(first: {missing[0]}); predict every truth clip")
    submission = submission.set_index("fname").loc[truth["fname"]]
    truth_names = _truth_labels(truth, truth_path)
    top3_format = list(submission.columns) == ["label"]
    classes = ClassMap(tuple(sorted({n for row in truth_names for n in row})) if top3_format
                       else tuple(submission.columns))
    for line, names in enumerate(truth_names, start=2):
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise DataValidationError(f"{truth_path}:{line}: label {unknown[0]!r} is not a column of "
                                      f"{submission_path.name}; use the submission's class names")
    y_true = classes.encode(truth_names)
    result: dict = {"clips": len(truth), "classes": len(classes)}
    if top3_format:
        if any(len(names) != 1 for names in truth_names):
            raise DataValidationError(f"{truth_path}: a top-3 label submission needs one true label per clip")
        guesses = [cell.split()[:3] for cell in submission["label"]]
        result["map3"] = float(np.mean([1.0 / (g.index(t[0]) + 1) if t[0] in g else 0.0
                                        for g, t in zip(guesses, truth_names)]))
        return result
    try:
        scores = submission.to_numpy(dtype=np.float64)
    except ValueError:
        raise DataValidationError(f"{submission_path}: class columns must hold numbers; "
                                  "write one score per class") from None
    if np.all(y_true.sum(axis=1) == 1):
        result["map3"] = map_at_k(y_true, scores, 3)
    per_class, weights = per_class_lwlrap(y_true, scores)
    result["lwlrap"] = lwlrap(y_true, scores)
    result["per_class"] = [
        {"class": name, "positives": int(y_true[:, k].sum()), "lwlrap": float(per_class[k]),
         "weight": float(weights[k])} for k, name in enumerate(classes.names)]
    return result


def format_report(result: dict) -> str:
    """Human-readable summary: headline scores, then the per-class table, worst first."""
    lines = [f"{result['clips']} clips, {result['classes']} classes"]
    for key, label in (("lwlrap", "lwlrap"), ("map3", "MAP@3")):
        if key in result:
            lines.append(f"{label:8s} {result[key]:.5f}")
    if "per_class" in result:
        lines.append(f"\n{'class':40s} {'clips':>6s} {'lwlrap':>8s}")
        for row in sorted(result["per_class"], key=lambda r: r["lwlrap"]):
            lines.append(f"{row['class'][:40]:40s} {row['positives']:6d} {row['lwlrap']:8.4f}")
    return "\n".join(lines)
