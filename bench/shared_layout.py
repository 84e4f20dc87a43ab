"""The shared UrbanSound8K subset in the FAT2019 layout, with the source recording of every curated clip.

``make_fat_layout.py`` (in ../shared/tools) writes fname,labels only. To score out-of-fold predictions
on unheard recordings, this runs the tool in-process with its ``load`` wrapped so that every class
name it hands to ``mix`` also carries the clip's recording (``fsID``): a ``str`` subclass equal to the
plain name, so the tool draws the same random numbers and writes the same files as when run alone.
The recordings of each curated clip are then written as the ``group`` column of train_curated.csv
(a clip mixed from two recordings is grouped by the first in label order; the other can still leak).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SUBSET = SHARED / "data" / "urbansound8k-subset"
TOOL = SHARED / "tools" / "make_fat_layout.py"


class _Labelled(str):
    """A class name that remembers the recording its clip came from (compares and hashes as the name)."""

    recording: str


def _labelled(name: str, recording: str) -> _Labelled:
    label = _Labelled(name)
    label.recording = recording
    return label


def write_layout(out: Path, args: list[str]) -> Path:
    """Run the tool with ``args`` into ``out`` (once) and add the curated clips' ``group`` column."""
    if (out / "sample_submission.csv").exists():
        return out
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
    curated = pd.read_csv(out / "train_curated.csv", dtype=str, keep_default_na=False)
    curated["group"] = recordings_per_split[0]  # the tool builds curated first
    curated.to_csv(out / "train_curated.csv", index=False)
    return out
