"""Load finished member run folders and align their OOF and test scores clip by clip (by fname)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from freesound_tf.config import load_recipe
from freesound_tf.data.layout import ClassMap
from freesound_tf.training.run_folder import read_task

# Stacking reads what a finished `freesound-tf train` writes, test split included.
_RERUN = "stacking needs finished members with OOF and test scores; finish it with `freesound-tf train`"


@dataclass(frozen=True)
class MemberScores:
    """Scores of every member on the same clips and classes, members first: ``(members, clips, classes)``."""

    names: tuple[str, ...]
    run_dirs: tuple[Path, ...]
    classes: ClassMap
    multilabel: bool
    fnames: tuple[str, ...]  # OOF clips every member scored
    oof: np.ndarray
    labels: np.ndarray  # (clips, classes) 0/1
    test_fnames: tuple[str, ...]
    test: np.ndarray
    test_labels: np.ndarray | None
    dropped: int  # OOF clips left out because some member has no OOF score for them (folds not run)
    groups: tuple[str, ...] | None = None  # recording / speaker per OOF clip (the training CSV's group column)


def _scores_table(run_dir: Path, csv_name: str, npy_name: str, classes: ClassMap) -> pd.DataFrame:
    """``fname`` index, one float column per class; full-precision values from the .npy file."""
    csv_path = run_dir / csv_name
    if not csv_path.exists():
        raise FileNotFoundError(f"{csv_path}: missing; {_RERUN}")
    fnames = pd.read_csv(csv_path, usecols=["fname"], dtype=str)["fname"]
    if fnames.duplicated().any():
        raise ValueError(f"{csv_path}: duplicate fname {fnames[fnames.duplicated()].iloc[0]!r}; "
                         "rerun `freesound-tf train` into a fresh run folder")
    return _array_table(run_dir / npy_name, pd.Index(fnames, name="fname"), classes, f"the {csv_name} rows")


def _array_table(npy_path: Path, fnames: pd.Index, classes: ClassMap, rows: str) -> pd.DataFrame:
    """A (clips, classes) array of a run folder as a table indexed by fname, shape checked."""
    if not npy_path.exists():
        raise FileNotFoundError(f"{npy_path}: missing; {_RERUN}")
    values = np.load(npy_path)
    if values.shape != (len(fnames), len(classes)):
        raise ValueError(f"{npy_path}: shape {values.shape} does not match {len(fnames)} clips ({rows}) and "
                         f"{len(classes)} classes; rerun `freesound-tf train` into a fresh run folder")
    return pd.DataFrame(values, index=fnames, columns=list(classes.names))


def _aligned(table: pd.DataFrame, fnames: pd.Index, classes: ClassMap, run_dir: Path, first: Path,
             what: str) -> np.ndarray:
    if set(table.index) != set(fnames):
        extra = sorted(set(table.index) ^ set(fnames))[0]
        raise ValueError(f"{run_dir}: its {what} clips differ from those of {first} (e.g. {extra!r}); "
                         "stack only members trained on the same data")
    return table.loc[fnames, list(classes.names)].to_numpy(np.float32)


def load_members(run_dirs: list[Path]) -> MemberScores:
    """Read every member's OOF/test scores, checking they share task, classes and clips.

    Rows and columns follow the first member (others are reordered by fname and class name).
    """
    if not run_dirs:
        raise ValueError("no member runs given; pass at least one run folder made by `freesound-tf train`")
    names, oofs, tests, classes, first = [], [], [], None, Path(run_dirs[0])
    for run_dir in map(Path, run_dirs):
        task = read_task(run_dir)
        name = load_recipe(run_dir / "recipe.toml").name
        if name in names:
            raise ValueError(f"{run_dir}: member name {name!r} is also the name of "
                             f"{run_dirs[names.index(name)]}; stack members with different recipe names")
        member_classes = ClassMap.from_json(run_dir / "classes.json")
        multilabel = task["multilabel"]
        if classes is None:
            classes, task_multilabel = member_classes, multilabel
        elif set(member_classes.names) != set(classes.names) or multilabel != task_multilabel:
            raise ValueError(f"{run_dir}: its classes or task type differ from those of {first}; "
                             "stack only members trained on the same data")
        oof = _scores_table(run_dir, "oof.csv", "oof.npy", member_classes)
        test = _scores_table(run_dir, "test.csv", "test.npy", member_classes)
        member_labels = _array_table(run_dir / "oof_labels.npy", oof.index, member_classes, "the oof.csv rows")
        if not oofs:
            oof_fnames, test_fnames = oof.index, test.index
            groups = _groups(run_dir / "oof.csv")
            labels = _aligned(member_labels, oof_fnames, classes, run_dir, first, "OOF")
            test_labels = None
            if (run_dir / "test_labels.npy").exists():
                test_labels = _aligned(_array_table(run_dir / "test_labels.npy", test.index, member_classes,
                                                    "the test.csv rows"), test_fnames, classes, run_dir, first, "test")
        elif not np.array_equal(_aligned(member_labels, oof_fnames, classes, run_dir, first, "OOF"), labels):
            raise ValueError(f"{run_dir}: its training labels differ from those of {first}; "
                             "stack only members trained on the same data")
        names.append(name)
        oofs.append(_aligned(oof, oof_fnames, classes, run_dir, first, "OOF"))
        tests.append(_aligned(test, test_fnames, classes, run_dir, first, "test"))
    oof, test = np.stack(oofs), np.stack(tests)
    covered = np.isfinite(oof).all(axis=(0, 2))
    if not covered.any():
        raise ValueError(f"{', '.join(map(str, run_dirs))}: no clip has OOF scores from every member "
                         "(their finished folds do not overlap); train every fold of each member")
    return MemberScores(tuple(names), tuple(map(Path, run_dirs)), classes, task_multilabel,
                        tuple(oof_fnames[covered]), oof[:, covered], labels[covered], tuple(test_fnames), test,
                        test_labels, int((~covered).sum()),
                        None if groups is None else tuple(groups[covered]))


def _groups(csv_path: Path) -> np.ndarray | None:
    """The ``group`` column of a member's oof.csv (absent when its training CSV had none)."""
    header = pd.read_csv(csv_path, nrows=0).columns
    if "group" not in header:
        return None
    return pd.read_csv(csv_path, usecols=["group"], dtype=str, keep_default_na=False)["group"].to_numpy(object)
