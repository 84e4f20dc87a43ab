"""Kaggle Freesound data layouts (FAT2019 and FAT2018): parsing, validation, class map.

Everything here is checked before any audio is decoded, so a typo in a CSV fails in
seconds with a one-line message of the form ``<file>:<line>: <problem>; <fix>``.
``<line>`` is the physical CSV line number (the header is line 1, the first data row
line 2), which is what an editor shows; problems with a whole file or folder omit it.

FAT2019 (multi-label)::

    train_curated.csv  fname,labels  (labels comma-separated, quoted: "Bark,Walk_and_footsteps")
    train_noisy.csv    fname,labels  (optional: without it the layout is curated-only)
    sample_submission.csv  fname,<class 1>,...,<class C>  (defines the class list and order)
    test_truth.csv     fname,labels  (optional: true test labels, for scoring)
    train_curated/ train_noisy/ test/

The training CSV (``train_curated.csv``, FAT2018's ``train.csv``) may add a ``group`` column naming
each clip's recording, speaker or source: clips of one group then always share a cross-validation
fold, so out-of-fold scores measure unheard recordings (an empty cell is a group of its own).

FAT2018 (single-label)::

    train.csv          fname,label,manually_verified
    sample_submission.csv  fname,label  (test clip names; label holds space-separated top-3)
    test_truth.csv     fname,label   (optional)
    audio_train/ audio_test/
"""
from __future__ import annotations

import difflib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from freesound_tf.locking import write_text_atomic

log = logging.getLogger(__name__)

KINDS = ("fat2019", "fat2018")
GROUP_COLUMN = "group"
# Rows whose audio is missing are reported one per error; how many more are summarised.
_MAX_NAMED_EXTRAS = 5


class DataValidationError(ValueError):
    """A data file is missing or malformed. The message is ``<file>:<line>: <problem>; <fix>``."""


@dataclass(frozen=True)
class ClassMap:
    """Ordered class names and the label <-> multi-hot conversions built on them."""

    names: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        if not names:
            raise ValueError("ClassMap needs at least one class name")
        if any(not n.strip() for n in names):
            raise ValueError("ClassMap: class names must be non-empty")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"ClassMap: duplicate class names {dupes}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        """Column of ``name``; KeyError naming close matches if it is not a class."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"unknown class {name!r}{_did_you_mean(name, self.names)}") from None

    def to_json(self, path: str | Path) -> None:
        """Write ``{"classes": [...], "index": {name: i}}``."""
        data = {"classes": list(self.names), "index": dict(self._index)}
        write_text_atomic(path, json.dumps(data, indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> ClassMap:
        """Read a file written by :meth:`to_json`, checking that classes and index agree."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataValidationError(f"{path}: class map not found; pass the classes.json "
                                      "written next to the model") from None
        except json.JSONDecodeError as err:
            raise DataValidationError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); "
                                      "rewrite it with ClassMap.to_json") from None
        names = data.get("classes") if isinstance(data, dict) else None
        if not isinstance(names, list) or not names:
            raise DataValidationError(f"{path}:1: no 'classes' list; rewrite it with ClassMap.to_json")
        index = data.get("index", {n: i for i, n in enumerate(names)})
        if index != {n: i for i, n in enumerate(names)}:
            raise DataValidationError(f"{path}:1: 'index' disagrees with the order of 'classes'; "
                                      "rewrite it with ClassMap.to_json")
        try:
            return cls(tuple(names))
        except ValueError as err:
            raise DataValidationError(f"{path}:1: {err}; rewrite it with ClassMap.to_json") from None

    def encode(self, labels: Sequence[Sequence[str]]) -> np.ndarray:
        """Label lists -> ``(n, C)`` float32 multi-hot. KeyError for an unknown name."""
        out = np.zeros((len(labels), len(self)), np.float32)
        for row, names in enumerate(labels):
            out[row, [self.index(n) for n in names]] = 1.0
        return out

    def decode(self, row: np.ndarray, top_k: int | None = None, threshold: float = 0.5) -> list[str]:
        """Scores of one clip -> names.

        ``top_k`` given: the k best names, best first (ties keep class order).
        Otherwise: names whose score is >= ``threshold``, in class order.
        """
        row = np.asarray(row, dtype=np.float64).reshape(-1)
        if row.shape[0] != len(self):
            raise ValueError(f"decode: expected {len(self)} scores, got {row.shape[0]}")
        if top_k is not None:
            order = np.argsort(-row, kind="stable")[:top_k]
            return [self.names[i] for i in order]
        return [self.names[i] for i in np.flatnonzero(row >= threshold)]


@dataclass
class SplitTable:
    """Clips of one split with their multi-hot labels (zeros where unlabeled)."""

    name: str
    audio_dir: Path
    fnames: list[str]
    labels: np.ndarray
    has_labels: bool
    manually_verified: np.ndarray | None = None
    # Optional group id per clip (the training CSV's ``group`` column): clips of one group share a fold.
    groups: list[str] | None = None

    def __post_init__(self) -> None:
        self.audio_dir = Path(self.audio_dir)
        self.fnames = list(self.fnames)
        self.labels = np.asarray(self.labels, dtype=np.float32)
        if self.labels.ndim != 2 or self.labels.shape[0] != len(self.fnames):
            raise ValueError(f"split {self.name!r}: labels shape {self.labels.shape} does not match "
                             f"{len(self.fnames)} fnames")
        if self.manually_verified is not None:
            self.manually_verified = np.asarray(self.manually_verified, dtype=bool)
            if self.manually_verified.shape != (len(self.fnames),):
                raise ValueError(f"split {self.name!r}: manually_verified must have one entry per clip")
        if self.groups is not None and len(self.groups) != len(self.fnames):
            raise ValueError(f"split {self.name!r}: groups must have one entry per clip")

    def __len__(self) -> int:
        return len(self.fnames)

    def paths(self) -> list[Path]:
        """Full path of every clip, in table order."""
        return [self.audio_dir / f for f in self.fnames]

    def subset(self, indices: Iterable[int] | np.ndarray) -> SplitTable:
        """Rows selected by integer positions or a boolean mask, as a new table."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        return SplitTable(
            name=self.name,
            audio_dir=self.audio_dir,
            fnames=[self.fnames[i] for i in idx],
            labels=self.labels[idx],
            has_labels=self.has_labels,
            manually_verified=None if self.manually_verified is None else self.manually_verified[idx],
            groups=None if self.groups is None else [self.groups[i] for i in idx],
        )


@dataclass
class DataLayout:
    """A parsed and validated Kaggle data folder."""

    kind: str
    root: Path
    classes: ClassMap
    splits: dict[str, SplitTable]
    multilabel: bool
    warnings: list[str] = field(default_factory=list)


def detect_layout(root: str | Path) -> str:
    """``"fat2019"`` if ``train_curated.csv`` is present, ``"fat2018"`` if ``train.csv`` is."""
    root = Path(root)
    if not root.is_dir():
        raise DataValidationError(f"{root}: data folder not found; put the Kaggle data there "
                                  "(see input/README.md) or run `freesound-tf demo-data DIR`")
    has_2019 = (root / "train_curated.csv").is_file()
    has_2018 = (root / "train.csv").is_file()
    if has_2019 and has_2018:
        raise DataValidationError(f"{root}: holds both train_curated.csv (FAT2019) and train.csv "
                                  "(FAT2018); pass kind='fat2019' or kind='fat2018'")
    if has_2019:
        return "fat2019"
    if has_2018:
        return "fat2018"
    raise DataValidationError(f"{root}: neither train_curated.csv (FAT2019 layout) nor train.csv "
                              "(FAT2018 layout) found; copy the Kaggle files there (see input/README.md)")


def load_layout(root: str | Path, kind: str | None = None, check_files: bool = True,
                noisy_csv: str | Path | None = None) -> DataLayout:
    """Parse and validate a Kaggle data folder.

    ``kind`` defaults to :func:`detect_layout`. With ``check_files`` every row's audio
    file must exist, and audio files without a row are reported in ``warnings``.
    ``noisy_csv`` (FAT2019 only) replaces ``train_noisy.csv``, e.g. by a relabelled copy
    written by ``freesound-tf relabel``; the noisy audio stays in ``train_noisy/``.
    """
    root = Path(root)
    kind = kind or detect_layout(root)
    if kind not in KINDS:
        raise DataValidationError(f"{root}: unknown layout kind {kind!r}; use one of {KINDS}")
    if noisy_csv is not None and kind != "fat2019":
        raise DataValidationError(f"{noisy_csv}: a noisy CSV needs the FAT2019 layout but {root} is {kind}; "
                                  "drop the noisy CSV option")
    if kind == "fat2019":
        layout = _load_fat2019(root, check_files, None if noisy_csv is None else Path(noisy_csv))
    else:
        layout = _load_fat2018(root, check_files)
    for message in layout.warnings:
        log.warning(message)
    return layout


def _load_fat2019(root: Path, check_files: bool, noisy_csv: Path | None = None) -> DataLayout:
    submission_path = root / "sample_submission.csv"
    submission = _read_table(submission_path, required=["fname"], allow_extra=True)
    class_names = [c for c in submission.columns if c != "fname"]
    if not class_names:
        raise DataValidationError(f"{submission_path}:1: no class columns after fname; use the "
                                  "competition's sample_submission.csv (fname + one column per class)")
    classes = ClassMap(tuple(class_names))
    warnings: list[str] = []
    splits: dict[str, SplitTable] = {}
    audio_checks = []

    sources = [("curated", root / "train_curated.csv", "train_curated")]
    if noisy_csv is not None:
        if not noisy_csv.is_file():
            raise DataValidationError(f"{noisy_csv}: noisy CSV not found; pass a fname,labels CSV such as "
                                      "the one `freesound-tf relabel` writes")
        sources.append(("noisy", noisy_csv, "train_noisy"))
    elif (root / "train_noisy.csv").is_file():
        sources.append(("noisy", root / "train_noisy.csv", "train_noisy"))
    else:
        warnings.append(f"{root / 'train_noisy.csv'}: not found; curated-only layout (no 'noisy' split)")
    for name, path, dir_name in sources:
        table = _read_table(path, required=["fname", "labels"], optional=(GROUP_COLUMN,) if name == "curated" else ())
        lines = _fnames(table, path)
        labels = _multi_labels(table, path, classes, "sample_submission.csv")
        splits[name] = SplitTable(name, root / dir_name, list(lines), classes.encode(labels), True,
                                  groups=_groups(table))
        audio_checks.append((splits[name], path, lines))

    test_lines = _fnames(submission, submission_path)
    test_labels, has_truth = _test_truth(root, list(test_lines), classes, multilabel=True)
    splits["test"] = SplitTable("test", root / "test", list(test_lines), test_labels, has_truth)
    audio_checks.append((splits["test"], submission_path, test_lines))

    if check_files:
        for split, path, lines in audio_checks:
            warnings += _check_audio(split, path, lines)
    return DataLayout("fat2019", root, classes, splits, multilabel=True, warnings=warnings)


def _load_fat2018(root: Path, check_files: bool) -> DataLayout:
    train_path = root / "train.csv"
    train = _read_table(train_path, required=["fname", "label", "manually_verified"], optional=(GROUP_COLUMN,))
    train_lines = _fnames(train, train_path)
    _no_empty(train, "label", train_path)  # before an empty cell could become a class
    classes = ClassMap(tuple(sorted(set(train["label"]))))
    verified = _verified_flags(train, train_path)
    train_labels = _single_labels(train, train_path, classes, "train.csv")
    splits = {"train": SplitTable("train", root / "audio_train", list(train_lines),
                                  classes.encode(train_labels), True, verified, _groups(train))}

    submission_path = root / "sample_submission.csv"
    submission = _read_table(submission_path, required=["fname", "label"])
    test_lines = _fnames(submission, submission_path)
    test_labels, has_truth = _test_truth(root, list(test_lines), classes, multilabel=False)
    splits["test"] = SplitTable("test", root / "audio_test", list(test_lines), test_labels, has_truth)

    warnings: list[str] = []
    if check_files:
        warnings += _check_audio(splits["train"], train_path, train_lines)
        warnings += _check_audio(splits["test"], submission_path, test_lines)
    return DataLayout("fat2018", root, classes, splits, multilabel=False, warnings=warnings)


def _read_table(path: Path, required: list[str], allow_extra: bool = False,
                optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV as strings, cells stripped, blank lines dropped, indexed by CSV line number.

    The header is read raw (``header=None``) so duplicate column names are not silently
    renamed by pandas, and blank lines are kept during parsing so line numbers stay exact.
    """
    if not path.is_file():
        raise DataValidationError(f"{path}: file not found; copy it from the Kaggle data "
                                  "(see input/README.md)")
    try:
        raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False,
                          skip_blank_lines=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataValidationError(f"{path}:1: empty file (no header, no rows); "
                                  "restore the file from the Kaggle data") from None
    except UnicodeDecodeError as err:
        raise DataValidationError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); "
                                  "save the file as UTF-8") from None
    except pd.errors.ParserError as err:
        raise DataValidationError(f"{path}{_parser_error_line(str(err))}: malformed CSV "
                                  f"({str(err).strip()}); fix the quoting and make every row "
                                  "have as many fields as the header") from None
    raw = raw.apply(lambda col: col.str.strip())
    header = list(raw.iloc[0])
    if "" in header or len(set(header)) < len(header):
        raise DataValidationError(f"{path}:1: empty or repeated column name in header {header}; "
                                  "give every column one unique name")
    missing = [c for c in required if c not in header]
    if missing:
        raise DataValidationError(f"{path}:1: missing column(s) {missing} (header is {header}); "
                                  f"the header must be {','.join(required)}")
    extra = [c for c in header if c not in required and c not in optional]
    if extra and not allow_extra:
        also = f" (optionally with {','.join(optional)})" if optional else ""
        raise DataValidationError(f"{path}:1: unexpected column(s) {extra}; "
                                  f"the header must be exactly {','.join(required)}{also}")
    body = raw.iloc[1:]
    body.columns = header
    body.index = pd.RangeIndex(2, len(raw) + 1, name="line")
    body = body[(body != "").any(axis=1)]
    if body.empty:
        raise DataValidationError(f"{path}:2: no data rows; the file needs at least one clip row "
                                  "under the header")
    return body


def _groups(table: pd.DataFrame) -> list[str] | None:
    """The optional group column (recording, speaker, source of each clip) as strings; None without it."""
    return list(table[GROUP_COLUMN]) if GROUP_COLUMN in table.columns else None


def _fnames(table: pd.DataFrame, path: Path) -> dict[str, int]:
    """Validated file names (non-empty, no folders, unique) -> their CSV line, in row order."""
    _no_empty(table, "fname", path)
    first_line: dict[str, int] = {}
    for fname, line in zip(table["fname"], table.index):
        if "/" in fname or "\\" in fname:
            raise DataValidationError(f"{path}:{line}: fname {fname!r} contains a folder; "
                                      "use the bare file name of a clip in the split's folder")
        if fname in first_line:
            raise DataValidationError(f"{path}:{line}: duplicate fname {fname!r} (first at line "
                                      f"{first_line[fname]}); remove or rename one of the rows")
        first_line[fname] = int(line)
    return first_line


def _no_empty(table: pd.DataFrame, column: str, path: Path) -> None:
    empty = table.index[table[column] == ""]
    if len(empty):
        raise DataValidationError(f"{path}:{empty[0]}: empty {column!r} cell; fill it in or delete the row")


def _multi_labels(table: pd.DataFrame, path: Path, classes: ClassMap, source: str) -> list[list[str]]:
    """Comma-separated label cells -> lists of names, each checked against ``classes``."""
    _no_empty(table, "labels", path)
    out = []
    for cell, line in zip(table["labels"], table.index):
        names = [n.strip() for n in cell.split(",")]
        if "" in names:
            raise DataValidationError(f"{path}:{line}: empty label in {cell!r}; "
                                      "remove the stray comma")
        for name in names:
            if name not in classes:
                raise DataValidationError(f"{path}:{line}: unknown label {name!r} (not a class of "
                                          f"{source}){_did_you_mean(name, classes.names)}; "
                                          "fix the spelling or add the class")
        out.append(list(dict.fromkeys(names)))
    return out


def _verified_flags(table: pd.DataFrame, path: Path) -> np.ndarray:
    bad = table.index[~table["manually_verified"].isin(["0", "1"])]
    if len(bad):
        raise DataValidationError(f"{path}:{bad[0]}: manually_verified is "
                                  f"{table.at[bad[0], 'manually_verified']!r}; use 0 or 1")
    return (table["manually_verified"] == "1").to_numpy()


def _single_labels(table: pd.DataFrame, path: Path, classes: ClassMap, source: str) -> list[list[str]]:
    """One class name per ``label`` cell, checked against ``classes``."""
    _no_empty(table, "label", path)
    for name, line in zip(table["label"], table.index):
        if name not in classes:
            raise DataValidationError(f"{path}:{line}: unknown label {name!r} (not a class of "
                                      f"{source}){_did_you_mean(name, classes.names)}; "
                                      "fix the spelling (one class per row)")
    return [[name] for name in table["label"]]


def _test_truth(root: Path, test_fnames: list[str], classes: ClassMap,
                multilabel: bool) -> tuple[np.ndarray, bool]:
    """Labels from optional ``test_truth.csv`` in sample_submission order, or zeros."""
    path = root / "test_truth.csv"
    if not path.is_file():
        return np.zeros((len(test_fnames), len(classes)), np.float32), False
    if multilabel:
        truth = _read_table(path, required=["fname", "labels"])
        labels = _multi_labels(truth, path, classes, "sample_submission.csv")
    else:
        truth = _read_table(path, required=["fname", "label"])
        labels = _single_labels(truth, path, classes, "train.csv")
    lines = _fnames(truth, path)
    known = set(test_fnames)
    for fname, line in lines.items():
        if fname not in known:
            raise DataValidationError(f"{path}:{line}: fname {fname!r} is not a test clip of "
                                      "sample_submission.csv; remove the row")
    by_name = dict(zip(lines, labels))
    absent = [f for f in test_fnames if f not in by_name]
    if absent:
        raise DataValidationError(f"{path}: no row for {len(absent)} test clip(s) of "
                                  f"sample_submission.csv (e.g. {absent[0]!r}); add their labels "
                                  "or delete test_truth.csv")
    return classes.encode([by_name[f] for f in test_fnames]), True


def _check_audio(split: SplitTable, csv_path: Path, lines: dict[str, int]) -> list[str]:
    """Error for rows without audio; warnings for audio without rows."""
    folder = split.audio_dir
    if not folder.is_dir():
        raise DataValidationError(f"{folder}: audio folder missing for {csv_path.name}; "
                                  "copy the Kaggle audio there")
    present = {p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
    missing = [f for f in split.fnames if f not in present]
    if missing:
        more = f" (and {len(missing) - 1} more rows)" if len(missing) > 1 else ""
        raise DataValidationError(f"{csv_path}:{lines[missing[0]]}: audio file {folder.name}/"
                                  f"{missing[0]} not found{more}; add the file or remove the row")
    extras = sorted(present - set(split.fnames))
    if not extras:
        return []
    named = ", ".join(extras[:_MAX_NAMED_EXTRAS]) + (", ..." if len(extras) > _MAX_NAMED_EXTRAS else "")
    return [f"{folder}: {len(extras)} file(s) without a row in {csv_path.name} are ignored ({named})"]


def _parser_error_line(message: str) -> str:
    """``":<line>"`` from a pandas parser message ("line N" is 1-based, "row N" 0-based), or ""."""
    if found := re.search(r"line (\d+)", message):
        return f":{found.group(1)}"
    if found := re.search(r"row (\d+)", message):
        return f":{int(found.group(1)) + 1}"
    return ""


def _did_you_mean(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f", did you mean {close[0]!r}?" if close else ""
