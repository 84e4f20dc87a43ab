"""The shared UrbanSound8K subset in the FAT2019 layout, with the source recording of every curated clip.

``make_fat_layout.py`` (in ../shared/tools) writes fname,labels only. To score out-of-fold predictions
on unheard recordings, this runs the tool in-process with its ``load`` wrapped so that every class
name it hands to ``mix`` also carries the clip's recording (``fsID``): a ``str`` subclass equal to the
plain name, so the tool draws the same random numbers and writes the same files as when run alone.
The recordings of each curated clip are then written as the ``group`` column of train_curated.csv
(a clip mixed from two recordings is grouped by the first in label order; the other can still leak).
Two layouts derived from one for bench/learning_curve.py share its test clips: its curated clips
from a share of the recordings, and its curated and noisy clips pooled under their true labels.
"""
from __future__ import annotations

import contextlib
import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SUBSET = SHARED / "data" / "urbansound8k-subset"
TOOL = SHARED / "tools" / "make_fat_layout.py"
TEST_RECORDINGS = "test_recordings.csv"


class _Labelled(str):
    """A class name that remembers the recording its clip came from (compares and hashes as the name)."""

    recording: str


def _labelled(name: str, recording: str) -> _Labelled:
    label = _Labelled(name)
    label.recording = recording
    return label


def write_layout(out: Path, args: list[str]) -> Path:
    """Run the tool with ``args`` into ``out`` (once), add the curated clips' ``group`` column and
    write each test clip's recording to ``test_recordings.csv`` (for :func:`interval_over_recordings`)."""
    if not (out / "sample_submission.csv").exists():
        with _building(out) as partial:
            recordings = _run_tool(partial, args)
            curated = pd.read_csv(partial / "train_curated.csv", dtype=str, keep_default_na=False)
            curated["group"] = recordings["curated"]
            curated.to_csv(partial / "train_curated.csv", index=False)
            _write_test_recordings(partial, recordings["test"])
    elif not (out / TEST_RECORDINGS).exists():  # written before that file existed: run the tool again aside
        aside = out.with_name(out.name + ".again")
        shutil.rmtree(aside, ignore_errors=True)
        recordings = _run_tool(aside, args)
        if (aside / "test_truth.csv").read_bytes() != (out / "test_truth.csv").read_bytes():
            raise RuntimeError(f"{out}: its test clips are not what the tool writes now for {args}; delete it")
        shutil.rmtree(aside)
        _write_test_recordings(out, recordings["test"])
    return out


def interval_over_recordings(run_dir: Path, layout: Path) -> tuple[float, float]:
    """95 % interval of a member run's test lwlrap, resampling the test recordings (``lwlrap_interval``)."""
    from freesound_tf.metrics import lwlrap_interval

    recording = dict(pd.read_csv(layout / TEST_RECORDINGS, dtype=str).itertuples(index=False))
    fnames = pd.read_csv(run_dir / "test.csv", usecols=["fname"], dtype=str)["fname"]
    return lwlrap_interval(np.load(run_dir / "test_labels.npy"), np.load(run_dir / "test.npy"),
                           [recording[f] for f in fnames])


def _write_test_recordings(out: Path, recordings: list[str]) -> None:
    truth = pd.read_csv(out / "test_truth.csv", dtype=str, keep_default_na=False)
    pd.DataFrame({"fname": truth["fname"], "group": recordings}).to_csv(out / TEST_RECORDINGS, index=False)


def write_pooled_layout(out: Path, base: Path, args: list[str]) -> Path:
    """``base`` (``write_layout(base, args)``) with its noisy clips, under their true labels, in the curated split.

    The tool corrupts noisy labels only after it has mixed every noisy clip, so a run with
    ``--label-noise 0`` writes the same curated and noisy audio (checked here, clip by clip) with the
    true labels; its test clips differ, so the test split is ``base``'s. Audio files are symlinks.
    """
    if (out / "sample_submission.csv").exists():
        return out
    with _building(out) as partial:
        clean = partial / "clean"
        recordings = _run_tool(clean, [*args, "--label-noise", "0"])
        curated = pd.read_csv(base / "train_curated.csv", dtype=str, keep_default_na=False)
        noisy = pd.read_csv(clean / "train_noisy.csv", dtype=str, keep_default_na=False)
        noisy["group"] = recordings["noisy"]
        for fname in noisy["fname"]:
            if (clean / "train_noisy" / fname).read_bytes() != (base / "train_noisy" / fname).read_bytes():
                raise RuntimeError(f"{clean / 'train_noisy' / fname}: differs from {base}'s; the tool no longer "
                                   "draws the same clips without label noise, so its true labels cannot be used")
        shutil.rmtree(clean)
        (partial / "train_curated").mkdir()
        for folder, table in (("train_curated", curated), ("train_noisy", noisy)):
            for fname in table["fname"]:
                (partial / "train_curated" / fname).symlink_to((base / folder / fname).resolve())
        pd.concat([curated, noisy]).to_csv(partial / "train_curated.csv", index=False)
        _share_test(partial, base)
    return out


def write_subset_layout(out: Path, base: Path, share: float, seed: int = 0) -> Path:
    """``base``'s curated clips from a random ``share`` of its recordings (groups), no noisy split, the same test."""
    if (out / "sample_submission.csv").exists():
        return out
    curated = pd.read_csv(base / "train_curated.csv", dtype=str, keep_default_na=False)
    groups = sorted(set(curated["group"]))
    kept = set(np.random.default_rng(seed).permutation(groups)[:max(1, round(share * len(groups)))])
    with _building(out) as partial:
        partial.mkdir()
        (partial / "train_curated").symlink_to((base / "train_curated").resolve())
        curated[curated["group"].isin(kept)].to_csv(partial / "train_curated.csv", index=False)
        _share_test(partial, base)
    return out


@contextlib.contextmanager
def _building(out: Path) -> Iterator[Path]:
    """A fresh folder beside ``out`` that replaces ``out`` once the body succeeds: never a half-written layout."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    yield partial
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)


def _share_test(out: Path, base: Path) -> None:
    (out / "test").symlink_to((base / "test").resolve())
    for name in ("test_truth.csv", TEST_RECORDINGS, "sample_submission.csv"):
        shutil.copyfile(base / name, out / name)


def _run_tool(out: Path, args: list[str]) -> dict[str, list[str]]:
    """Run the tool into ``out``; the source recording of every clip of each split, in CSV order."""
    spec = importlib.util.spec_from_file_location("make_fat_layout", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    meta = pd.read_csv(SUBSET / "metadata.csv")
    recording_of = dict(zip(meta["fname"], meta["fsID"].astype(str)))
    load, mix = tool.load, tool.mix
    recordings_per_split: list[list[str]] = []

    def load_labelled(src, rows, sr):
        return [(_labelled(label, recording_of[f]), y) for (label, y), f in zip(load(src, rows, sr), rows["fname"])]

    def mix_recorded(*a, **k):
        clips = mix(*a, **k)
        recordings_per_split.append([labels[0].recording for _, labels in clips])
        return clips

    tool.load, tool.mix = load_labelled, mix_recorded
    argv, sys.argv = sys.argv, [str(TOOL), str(SUBSET), str(out), *args]
    try:
        tool.main()
    finally:
        sys.argv = argv
    return dict(zip(("curated", "noisy", "test"), recordings_per_split))  # the tool's build order
