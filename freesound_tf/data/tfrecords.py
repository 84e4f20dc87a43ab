"""Sharded TFRecord copies of a waveform cache, for the in-graph loader when a cache is too big for memory.

One record per cached clip, raw little-endian bytes, not a ``tf.train.Example``: the clip's row in the
cache (int64), its global features (float32, ``steps x 12``), then its trimmed samples (int16). A crop
is cut with ``tf.strings.substr`` and decoded alone, so a step copies only the samples it uses (parsing
an Example copies the whole clip, twice).
Records are written in a seeded random order of the rows, in shards of about ``shard_bytes``, under
``<cache>.tfrecords/<identity>/`` where ``identity`` hashes the cache file's name, size and
modification time: a rebuilt cache gets new shards, and shards of older versions are removed. A
copy is written to a temporary folder and renamed into place, so readers never see half of it and
two writers racing both end with one complete copy.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

from freesound_tf.data.features import GLOBAL_FEATURE_NAMES

SHARD_BYTES = 128 << 20
FORMAT = "raw-1"  # part of a copy's identity: shards of another layout are rewritten
_ROW_BYTES = 8
_MANIFEST = "manifest.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordShards:
    """A complete set of shards of one cache file."""

    folder: Path
    files: tuple[str, ...]
    record_bytes: float  # mean serialized record size (sizes the shuffle buffer)
    steps: int


def records_root(cache_path: str | Path) -> Path:
    path = Path(cache_path)
    return path.with_name(path.name + ".tfrecords")


def cache_identity(cache_path: str | Path) -> str:
    """Changes whenever the cache file is rewritten (name, size, mtime in ns) or the record layout changes."""
    path = Path(cache_path)
    st = path.stat()
    return hashlib.sha1(f"{FORMAT}:{path.name}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]


def find_records(cache_path: str | Path) -> RecordShards | None:
    """The shards of the cache as it is now, or None if they were not written (or the cache changed)."""
    folder = records_root(cache_path) / cache_identity(cache_path)
    try:
        manifest = json.loads((folder / _MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    files = tuple(str(folder / name) for name in manifest["files"])
    return RecordShards(folder, files, manifest["record_bytes"], manifest["steps"])


def write_records(cache_path: str | Path, shard_bytes: int = SHARD_BYTES, seed: int = 0) -> RecordShards:
    """Write (once) the shards of the cache file at ``cache_path``; return them."""
    existing = find_records(cache_path)
    if existing is not None:
        return existing
    root = records_root(cache_path)
    identity = cache_identity(cache_path)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{identity}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        manifest = _write_shards(Path(cache_path), tmp, shard_bytes, seed)
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1))  # last: marks the copy complete
        try:
            tmp.rename(root / identity)
        except OSError:  # another process renamed its complete copy first
            if find_records(cache_path) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in root.iterdir():  # shards of earlier versions of the cache
        if old.name != identity and not old.name.startswith(".tmp-"):
            shutil.rmtree(old, ignore_errors=True)
    shards = find_records(cache_path)
    log.info("%s: %d TFRecord shard(s) written to %s", cache_path, len(shards.files), shards.folder)
    return shards


def _write_shards(cache_path: Path, folder: Path, shard_bytes: int, seed: int) -> dict:
    with h5py.File(cache_path, "r") as f:
        offsets, lengths = f["offsets"][()], f["lengths"][()]
        samples, features = f["samples"], f["global_features"]
        steps = int(f.attrs["global_steps"])
        order = np.random.default_rng(seed).permutation(len(lengths))
        files, writer, written, total = [], None, 0, 0
        try:
            for row in order:
                if writer is None or written >= shard_bytes:
                    if writer is not None:
                        writer.close()
                    files.append(f"shard-{len(files):05d}.tfrecord")
                    writer, written = tf.io.TFRecordWriter(str(folder / files[-1])), 0
                start = int(offsets[row])
                record = _record(int(row), samples[start:start + int(lengths[row])], features[row])
                writer.write(record)
                written += len(record)
                total += len(record)
        finally:
            if writer is not None:
                writer.close()
    return {"format": FORMAT, "files": files, "clips": int(len(lengths)), "steps": steps,
            "record_bytes": total / max(1, len(lengths))}


def _record(row: int, pcm: np.ndarray, features: np.ndarray) -> bytes:
    return np.int64(row).astype("<i8").tobytes() + features.astype("<f4").tobytes() + pcm.astype("<i2").tobytes()


def _header_bytes(steps: int) -> int:
    return _ROW_BYTES + 4 * steps * len(GLOBAL_FEATURE_NAMES)


def parse_rows(records: tf.Tensor) -> tf.Tensor:
    """Cache rows (int64) of serialized records (any shape); only their first 8 bytes are read."""
    rows = tf.io.decode_raw(tf.strings.substr(records, 0, _ROW_BYTES), tf.int64, little_endian=True)
    return tf.squeeze(rows, -1)


def clip_length(record: tf.Tensor, steps: int) -> tf.Tensor:
    """int64 number of samples in one serialized record."""
    return tf.cast(tf.strings.length(record) - _header_bytes(steps), tf.int64) // 2


def parse_features(record: tf.Tensor, steps: int) -> tf.Tensor:
    """(steps, 12) float32 global features of one serialized record."""
    raw = tf.strings.substr(record, _ROW_BYTES, _header_bytes(steps) - _ROW_BYTES)
    return tf.reshape(tf.io.decode_raw(raw, tf.float32, little_endian=True), (steps, len(GLOBAL_FEATURE_NAMES)))


def parse_samples(record: tf.Tensor, steps: int, start: tf.Tensor | int = 0, size: tf.Tensor | int = -1) -> tf.Tensor:
    """int16 samples ``[start, start + size)`` of one serialized record (``size=-1``: to the end); only those
    bytes are copied. ``start`` and ``size`` must lie within the clip."""
    header = tf.cast(_header_bytes(steps), tf.int64)
    start = tf.cast(start, tf.int64)
    size = tf.cast(size, tf.int64)
    size = tf.where(size < 0, clip_length(record, steps) - start, size)
    raw = tf.strings.substr(record, header + 2 * start, 2 * size)
    return tf.io.decode_raw(raw, tf.int16, little_endian=True)
