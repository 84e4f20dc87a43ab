"""Resumable, parallel HDF5 cache of decoded, trimmed waveforms and their global features.

One file per split and audio setting: ``<cache_dir>/<split>-<key>.h5`` where ``key`` hashes
the :class:`AudioConfig` and the file format version, so changing a setting builds a new
file and an unchanged one is reused without decoding anything.

File layout (every part file written during a build has the same layout):

- ``samples``          int16 (total,)   all trimmed clips back to back, float * 32767 rounded
- ``offsets``/``lengths`` int64 (n,)    where clip i lives in ``samples``
- ``untrimmed_lengths`` int64 (n,)
- ``global_features``  float32 (n, steps, 12) of the untrimmed clip (see ``features``)
- ``length_feature``   float32 (n,)     trimmed length / (length_norm_seconds * sample_rate)
- ``fnames``           utf-8 (n,)
- ``skipped_fnames``/``skipped_reasons`` utf-8: clips that could not be decoded
- attributes: the audio settings, ``key`` and ``format_version``

A build decodes the clips missing from the existing file in worker processes and writes
each finished shard atomically to ``<file>.parts/``; an interrupted build (exception,
Ctrl-C, SIGKILL) resumes from those parts. Once every clip is accounted for, the old file
and the parts are merged into a new file that atomically replaces the old one. Clips that
fail to decode are skipped and listed in ``<split>-<key>.report.csv``; delete the cache
file to retry them.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple, Protocol

import h5py
import numpy as np
from tqdm.auto import tqdm

from freesound_tf.config import AudioConfig
from freesound_tf.data.audio import AudioDecodeError, load_audio, trim_silence
from freesound_tf.data.features import GLOBAL_FEATURE_NAMES, global_features

FORMAT_VERSION = 1
PCM_SCALE = 32767.0
_WRITE_BLOCK = 1 << 24  # samples (32 MB of int16) buffered per HDF5 write
_STR = h5py.string_dtype("utf-8")
log = logging.getLogger(__name__)


class ClipTable(Protocol):
    """What :func:`build_cache` needs from a split table (e.g. ``layout.SplitTable``)."""

    @property
    def name(self) -> str: ...

    @property
    def fnames(self) -> Sequence[str]: ...

    def paths(self) -> list[Path]: ...


def cache_key(audio: AudioConfig) -> str:
    """Short hash of the audio settings and the file format version."""
    settings = {"format_version": FORMAT_VERSION, **dataclasses.asdict(audio)}
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def cache_path(cache_dir: str | Path, split_name: str, audio: AudioConfig) -> Path:
    """``cache_dir / "<split>-<key>.h5"``."""
    return Path(cache_dir) / f"{split_name}-{cache_key(audio)}.h5"


def report_path(path: str | Path) -> Path:
    """The skipped-clips report next to cache file ``path``: ``<stem>.report.csv``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.report.csv")


class WaveformCache:
    """Read access to one cache file; samples are read lazily, one hyperslab at a time.

    Small per-clip arrays are loaded at construction; the HDF5 handle is opened on the first
    read and reopened in a new process, so instances can be pickled into workers.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: waveform cache not found; build it with build_cache")
        try:
            with h5py.File(self.path, "r") as f:
                self._load_metadata(f)
        except (OSError, KeyError) as err:
            raise OSError(f"{self.path}: not a readable waveform cache ({err}); delete it to rebuild") from None
        self._index = {fname: i for i, fname in enumerate(self.fnames)}
        self._file: h5py.File | None = None
        self._samples: h5py.Dataset | None = None  # kept open: a lookup per read costs as much as the read
        self._pid = -1

    def _load_metadata(self, f: h5py.File) -> None:
        version = int(f.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise OSError(f"format version {version}, this code reads {FORMAT_VERSION}")
        self.key = str(f.attrs["key"])
        self.sample_rate = int(f.attrs["sample_rate"])
        self.steps = int(f.attrs["global_steps"])
        self.fnames: list[str] = list(f["fnames"].asstr()[()])
        self.offsets: np.ndarray = f["offsets"][()]
        self.lengths: np.ndarray = f["lengths"][()]
        self.untrimmed_lengths: np.ndarray = f["untrimmed_lengths"][()]
        self.length_feature: np.ndarray = f["length_feature"][()]
        self.skipped: list[tuple[str, str]] = list(zip(
            f["skipped_fnames"].asstr()[()], f["skipped_reasons"].asstr()[()]))

    def __len__(self) -> int:
        return len(self.fnames)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"], state["_samples"], state["_pid"] = None, None, -1
        return state

    def index_of(self, fname: str) -> int:
        """Row of ``fname``; KeyError names the file and the cache."""
        try:
            return self._index[fname]
        except KeyError:
            raise KeyError(f"{fname}: not in waveform cache {self.path} (skipped or not in this split)") from None

    def read(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """float32 samples ``[start, stop)`` of trimmed clip ``i``; ``stop`` is capped at its length."""
        return self._read_pcm(i, start, stop).astype(np.float32) / np.float32(PCM_SCALE)

    def read_global_features(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """(k, steps, 12) float32 global features of clips ``indices`` (any order, repeats allowed)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.zeros((0, self.steps, len(GLOBAL_FEATURE_NAMES)), np.float32)
        if idx.min() < 0 or idx.max() >= len(self):
            raise IndexError(f"{self.path}: feature index out of range [0, {len(self)})")
        unique, inverse = np.unique(idx, return_inverse=True)
        return self._handle()["global_features"][unique][inverse]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file, self._samples = None, None

    def __enter__(self) -> WaveformCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_pcm(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        n = int(self.lengths[i])
        stop = n if stop is None else min(int(stop), n)
        if not 0 <= start <= stop:
            raise ValueError(f"{self.path}: read({i}, start={start}, stop={stop}) needs 0 <= start <= stop")
        offset = self.offsets[i]
        self._handle()
        return self._samples[offset + start:offset + stop]

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._samples = self._file["samples"]
            self._pid = os.getpid()
        return self._file


def read_cache_report(path: str | Path) -> list[tuple[str, str]]:
    """(fname, reason) rows of the report of cache file ``path`` (or of the report CSV itself)."""
    path = Path(path)
    report = path if path.suffix == ".csv" else report_path(path)
    with open(report, newline="", encoding="utf-8") as f:
        return [(row["fname"], row["reason"]) for row in csv.DictReader(f)]


class _Clip(NamedTuple):
    fname: str
    reason: str  # empty when decoded
    pcm: np.ndarray | None  # int16 trimmed samples
    untrimmed_length: int
    features: np.ndarray | None


def _process_clip(job: tuple[str, str, AudioConfig]) -> _Clip:
    """Worker: decode, resample, trim, quantize and compute features for one clip."""
    fname, path, audio = job
    try:
        y = load_audio(path, audio.sample_rate)
        trimmed, _, _ = trim_silence(y, audio.trim_top_db)
        if trimmed.size == 0:
            return _Clip(fname, "empty after trimming", None, 0, None)
        pcm = np.round(np.clip(trimmed, -1.0, 1.0) * PCM_SCALE).astype(np.int16)
        return _Clip(fname, "", pcm, len(y), global_features(y, audio.global_steps))
    except AudioDecodeError as err:
        return _Clip(fname, err.reason, None, 0, None)
    except Exception as err:  # one odd file must never abort a build of thousands
        return _Clip(fname, f"{type(err).__name__}: {err}", None, 0, None)


def build_cache(table: ClipTable, audio: AudioConfig, cache_dir: str | Path, workers: int | None = None,
                progress: bool = True, shard_size: int = 256) -> Path:
    """Make sure the cache of ``table`` for ``audio`` holds every clip; return its path.

    Only clips missing from the existing file and finished parts are decoded, over
    ``workers`` processes (default: all usable cores; 1 decodes in this process).
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    fnames = list(table.fnames)
    paths = [str(p) for p in table.paths()]
    _check_unique(fnames, table.name)
    path = cache_path(cache_dir, table.name, audio)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts_dir = path.with_name(path.name + ".parts")
    final = _open_source(path)
    if final is not None and _covers(final, fnames):
        final.close()
        shutil.rmtree(parts_dir, ignore_errors=True)  # left over if a merge was killed after its rename
        log.info("split %s: reusing %s (%d clips, %d skipped)", table.name, path, len(final), len(final.skipped))
        return path

    sources: list[WaveformCache] = [final] if final is not None else []
    sources += [c for c in map(_open_source, sorted(parts_dir.glob("*.h5"))) if c is not None]
    done = set().union(*(_accounted(c) for c in sources))
    todo = [(fname, p, audio) for fname, p in zip(fnames, paths) if fname not in done]
    reused = sum(1 for fname in fnames if fname in done)
    if todo:
        parts_dir.mkdir(exist_ok=True)
        new_parts = _decode_in_shards(todo, audio, parts_dir, workers, progress, shard_size, table.name)
        sources += [WaveformCache(p) for p in new_parts]

    n_cached, skipped = _merge(path, fnames, sources, audio)
    for source in sources:
        source.close()
    shutil.rmtree(parts_dir, ignore_errors=True)
    log.info("split %s: %d clips cached, %d skipped (%d files processed now, %d reused) -> %s",
             table.name, n_cached, len(skipped), len(todo), reused, path)
    if skipped:
        log.warning("split %s: %d clips could not be decoded and were skipped; see %s",
                    table.name, len(skipped), report_path(path))
    return path


def _check_unique(fnames: list[str], split: str) -> None:
    seen: set[str] = set()
    for row, fname in enumerate(fnames):
        if fname in seen:
            raise ValueError(f"split {split}: duplicate fname {fname!r} at row {row}; remove the repeated row")
        seen.add(fname)


def _open_source(path: Path) -> WaveformCache | None:
    """Open an existing cache or part file; an unreadable one is deleted (it will be rebuilt)."""
    if not path.is_file():
        return None
    try:
        return WaveformCache(path)
    except OSError as err:
        log.warning("%s; removing it and decoding its clips again", err)
        path.unlink()
        return None


def _accounted(cache: WaveformCache) -> set[str]:
    return set(cache.fnames) | {fname for fname, _ in cache.skipped}


def _covers(cache: WaveformCache, fnames: list[str]) -> bool:
    accounted = _accounted(cache)
    return all(fname in accounted for fname in fnames)


def _decode_in_shards(todo: list[tuple[str, str, AudioConfig]], audio: AudioConfig, parts_dir: Path,
                      workers: int | None, progress: bool, shard_size: int, split: str) -> list[Path]:
    """Decode ``todo`` in parallel; every ``shard_size`` results are written as one part file."""
    workers = max(1, min(workers or _usable_cores(), len(todo)))
    written: list[Path] = []
    shard: list[_Clip] = []
    with _ClipMapper(workers) as mapper, tqdm(total=len(todo), desc=f"caching {split}", unit="clip",
                                                disable=not progress) as bar:
        for clip in mapper(todo):
            shard.append(clip)
            bar.update()
            if len(shard) == shard_size:
                written.append(_write_part(parts_dir, shard, audio))
                shard = []
        if shard:
            written.append(_write_part(parts_dir, shard, audio))
    return written


class _ClipMapper:
    """Context manager yielding an ordered ``map(_process_clip, jobs)``, in-process or over workers.

    Workers start by 'forkserver' (clean processes, not forks of a parent that may have
    TensorFlow loaded); a worker that dies raises BrokenProcessPool instead of hanging. On any
    exit, including Ctrl-C, queued clips are cancelled.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> Callable[[list], Iterator[_Clip]]:
        if self.workers == 1:
            return lambda jobs: (_process_clip(job) for job in jobs)
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            # The server imports the decoders (and the feature kernels) once; every later pool forks warm workers.
            context.set_forkserver_preload([__name__, "freesound_tf.data._warm_features"])
        else:
            context = multiprocessing.get_context("spawn")
        self.executor = ProcessPoolExecutor(self.workers, mp_context=context)
        return lambda jobs: self.executor.map(_process_clip, jobs, chunksize=8)

    def __exit__(self, *exc: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _write_part(parts_dir: Path, shard: list[_Clip], audio: AudioConfig) -> Path:
    """Write one finished shard atomically; its name is a hash of its fnames."""
    name = hashlib.sha1("\0".join(c.fname for c in shard).encode()).hexdigest()[:16]
    path = parts_dir / f"part-{name}.h5"
    ok = [c for c in shard if not c.reason]
    _write_cache_file(
        path, audio, [c.fname for c in ok], np.array([len(c.pcm) for c in ok], np.int64),
        np.array([c.untrimmed_length for c in ok], np.int64), ((c.pcm, c.features) for c in ok),
        [(c.fname, c.reason) for c in shard if c.reason])
    return path


def _merge(path: Path, order: list[str], sources: list[WaveformCache], audio: AudioConfig,
           ) -> tuple[int, list[tuple[str, str]]]:
    """Write all clips of ``sources`` into ``path`` (table order first), plus the report."""
    location: dict[str, tuple[WaveformCache, int]] = {}
    reasons: dict[str, str] = {}
    for source in sources:
        for i, fname in enumerate(source.fnames):
            location.setdefault(fname, (source, i))
        for fname, reason in source.skipped:
            reasons.setdefault(fname, reason)
    in_table = set(order)
    fnames = [f for f in order if f in location] + [f for f in location if f not in in_table]
    skipped = [(f, reasons[f]) for f in order if f in reasons and f not in location]
    skipped += [(f, r) for f, r in reasons.items() if f not in in_table and f not in location]

    def clip_data() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for fname in fnames:
            source, i = location[fname]
            yield source._read_pcm(i), source._handle()["global_features"][i]

    lengths = np.array([location[f][0].lengths[location[f][1]] for f in fnames], np.int64)
    untrimmed = np.array([location[f][0].untrimmed_lengths[location[f][1]] for f in fnames], np.int64)
    _write_cache_file(path, audio, fnames, lengths, untrimmed, clip_data(), skipped)
    _write_report(report_path(path), skipped)
    return len(fnames), skipped


def _write_cache_file(path: Path, audio: AudioConfig, fnames: list[str], lengths: np.ndarray,
                      untrimmed: np.ndarray, clip_data: Iterable[tuple[np.ndarray, np.ndarray]],
                      skipped: list[tuple[str, str]]) -> None:
    """Write the layout described in the module doc to a temp file, then rename it to ``path``."""
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(lengths) else lengths
    steps, n_feat = audio.global_steps, len(GLOBAL_FEATURE_NAMES)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs.update({"format_version": FORMAT_VERSION, "key": cache_key(audio),
                        **dataclasses.asdict(audio)})
        # Contiguous (unchunked) so a crop is one hyperslab read.
        samples = f.create_dataset("samples", shape=(int(lengths.sum()),), dtype=np.int16)
        features = f.create_dataset("global_features", shape=(len(fnames), steps, n_feat), dtype=np.float32)
        # Clips are gathered into blocks of ~32 MB: one HDF5 write per block, not two per clip.
        first, pending, pending_feats = 0, [], []
        for i, (pcm, feats) in enumerate(clip_data):
            pending.append(pcm)
            pending_feats.append(feats)
            end = offsets[i] + lengths[i]
            if end - offsets[first] >= _WRITE_BLOCK or i == len(fnames) - 1:
                samples[offsets[first]:end] = np.concatenate(pending)
                features[first:i + 1] = np.stack(pending_feats)
                first, pending, pending_feats = i + 1, [], []
        f["offsets"], f["lengths"], f["untrimmed_lengths"] = offsets, lengths, untrimmed
        f["length_feature"] = (lengths / (audio.length_norm_seconds * audio.sample_rate)).astype(np.float32)
        f.create_dataset("fnames", data=list(fnames), dtype=_STR)
        f.create_dataset("skipped_fnames", data=[s[0] for s in skipped], dtype=_STR)
        f.create_dataset("skipped_reasons", data=[s[1] for s in skipped], dtype=_STR)
    os.replace(tmp, path)


def _write_report(path: Path, skipped: list[tuple[str, str]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["fname", "reason"])
        writer.writerows(skipped)
    os.replace(tmp, path)
