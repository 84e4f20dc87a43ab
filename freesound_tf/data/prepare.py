"""`prepare`: validate a data folder, build the waveform caches, write class map and folds.

Everything here is idempotent: unchanged caches are reused, so training can call it again.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from freesound_tf.config import AudioConfig, AugmentConfig, FoldsConfig, PipelineConfig
from freesound_tf.data.cache import WaveformCache, build_cache, report_path
from freesound_tf.data.folds import make_folds, save_folds
from freesound_tf.data.layout import DataLayout, SplitTable, load_layout
from freesound_tf.locking import write_text_atomic

log = logging.getLogger(__name__)

# The split that k-fold training and out-of-fold predictions run on, per layout.
TRAIN_SPLIT = {"fat2019": "curated", "fat2018": "train"}


@dataclass
class PreparedSplit:
    """A split's table and its cache; ``labels`` follow the cache rows (skipped clips left out)."""

    table: SplitTable
    cache_path: Path

    def open(self) -> WaveformCache:
        return WaveformCache(self.cache_path)

    def labels(self, cache: WaveformCache, allow_extra: bool = False) -> np.ndarray:
        return aligned_labels(self.table, cache, allow_extra)

    def rows(self, cache: WaveformCache) -> np.ndarray:
        return table_rows(self.table, cache)

    def groups(self, cache: WaveformCache) -> list[str] | None:
        """The table's group id of every cache row (see :func:`make_folds`), or None without a group column."""
        if self.table.groups is None:
            return None
        group = dict(zip(self.table.fnames, self.table.groups))
        return [group.get(fname, "") for fname in cache.fnames]


@dataclass
class PreparedData:
    layout: DataLayout
    splits: dict[str, PreparedSplit]
    work_dir: Path

    @property
    def train_split(self) -> str:
        return TRAIN_SPLIT[self.layout.kind]


def aligned_labels(table: SplitTable, cache: WaveformCache, allow_extra: bool = False) -> np.ndarray:
    """Label rows of ``table`` reordered to match the cache rows.

    A cache may hold clips the table lacks (the cache of the full noisy CSV reused for a relabelled
    subset of it). With ``allow_extra`` their rows are zeros and the caller trains on
    :func:`table_rows` only; otherwise that is an error.
    """
    position = {fname: k for k, fname in enumerate(table.fnames)}
    labels = np.zeros((len(cache.fnames), table.labels.shape[1]), np.float32)
    rows = table_rows(table, cache)
    if len(rows) < len(cache.fnames) and not allow_extra:
        extra = next(f for f in cache.fnames if f not in position)
        raise ValueError(f"{cache.path}: holds {len(cache.fnames) - len(rows)} clip(s) without a row in the "
                         f"{table.name} CSV (e.g. {extra!r}); delete the cache file to rebuild it for the CSV")
    labels[rows] = table.labels[[position[cache.fnames[i]] for i in rows]]
    return labels


def table_rows(table: SplitTable, cache: WaveformCache) -> np.ndarray:
    """Cache rows of the clips listed in ``table``, in cache order."""
    wanted = set(table.fnames)
    return np.array([i for i, fname in enumerate(cache.fnames) if fname in wanted], np.int64)


def prepare_data(
    input_dir: str | Path,
    audio: AudioConfig,
    work_dir: str | Path,
    splits: list[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
    noisy_csv: str | Path | None = None,
    pipeline: PipelineConfig | None = None,
    augment: AugmentConfig | None = None,
) -> PreparedData:
    """Validate ``input_dir`` (fails before heavy work) and build a cache per split.

    ``noisy_csv`` replaces the layout's ``train_noisy.csv`` (e.g. a relabelled copy). The cache
    is keyed by split name and audio settings, not by the CSV, so it reuses the decoded noisy audio.
    With the recipe's ``pipeline`` (and ``augment``), the TFRecord shards its in-graph loader will
    stream a training split from (a cache too big for memory) are written now too.
    """
    layout = load_layout(input_dir, noisy_csv=noisy_csv)  # logs its own warnings (e.g. audio files with no CSV row)
    work_dir = Path(work_dir)
    cache_dir = work_dir / "cache"
    wanted = splits or list(layout.splits)
    unknown = sorted(set(wanted) - set(layout.splits))
    if unknown:
        raise ValueError(f"{input_dir}: no split(s) {unknown}; this {layout.kind} layout has {sorted(layout.splits)}")
    prepared = {}
    for name in wanted:
        table = layout.splits[name]
        log.info("caching split %s: %d clips from %s", name, len(table.fnames), table.audio_dir)
        prepared[name] = PreparedSplit(table, build_cache(table, audio, cache_dir, workers=workers, progress=progress))
        if pipeline is not None and name != "test":
            from freesound_tf.data.graph_pipeline import write_stream_records  # TensorFlow only when needed

            write_stream_records(prepared[name].cache_path, pipeline, augment or AugmentConfig())
    layout.classes.to_json(work_dir / "classes.json")
    return PreparedData(layout, prepared, work_dir)


def write_folds(data: PreparedData, folds: FoldsConfig, path: str | Path) -> np.ndarray:
    """Stratified folds over the cached clips of the training split (whole groups when its CSV has a
    ``group`` column), saved as ``folds.csv``."""
    split = data.splits[data.train_split]
    with split.open() as cache:
        labels = split.labels(cache)
        fold_ids = make_folds(labels, folds.n_splits, folds.seed, multilabel=data.layout.multilabel,
                              groups=split.groups(cache))
        save_folds(path, cache.fnames, fold_ids)
    return fold_ids


def write_summary(data: PreparedData, path: str | Path) -> dict:
    """A JSON summary of what was prepared: clips cached and skipped per split."""
    summary = {"input": str(data.layout.root), "layout": data.layout.kind, "classes": len(data.layout.classes),
               "splits": {}}
    for name, split in data.splits.items():
        with split.open() as cache:
            listed = set(split.table.fnames)
            summary["splits"][name] = {"clips": len(split.table.fnames), "cached": len(split.rows(cache)),
                                       "skipped": sum(fname in listed for fname, _ in cache.skipped),
                                       "cache": str(split.cache_path), "report": str(report_path(split.cache_path))}
    write_text_atomic(path, json.dumps(summary, indent=2))
    return summary
