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
- ``source_keys``      utf-8 (n,)     "<size>:<mtime_ns>" of each clip's audio file when it was decoded
- ``skipped_fnames``/``skipped_reasons``/``skipped_source_keys`` utf-8: clips that could not be decoded
- attributes: the audio settings, ``key``, ``format_version`` and ``complete`` (written last)

A build decodes the clips missing from the existing file in worker processes; each worker
writes every shard it finishes atomically to ``<file>.parts/`` (only names cross processes);
an interrupted build (exception, Ctrl-C, SIGKILL) resumes from those parts. Once every clip
is accounted for, the old file and the parts are merged into a new file that atomically
replaces the old one. Clips that fail to decode are skipped and listed in
``<split>-<key>.report.csv``.

A clip counts as cached only while its audio file has the size and modification time (ns) it
had when decoded: a replaced or edited file is decoded again on the next build, and so is an
unreadable one whose file changed. (A rewrite that keeps both the size and the nanosecond mtime
is not noticed; touch the file.) One process at a time builds a cache file (a lock file
``<file>.lock``); another that needs it waits, then reuses what the first one built. Temporary
files have unique names, so nothing two processes write can mix.
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
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import NamedTuple, Protocol

import h5py
import numpy as np
from tqdm.auto import tqdm

from freesound_tf.config import AudioConfig
from freesound_tf.data.audio import AudioDecodeError, load_audio, quantize_pcm16, trim_silence
from freesound_tf.data.features import GLOBAL_FEATURE_NAMES, global_features
from freesound_tf.locking import atomic_path, file_lock, remove_stale_temps

FORMAT_VERSION = 2  # 2: per-clip source keys and the "complete" attribute
PCM_SCALE = 32767.0
_STR = h5py.string_dtype("utf-8")
_RUN_SAMPLES = 1 << 20  # most samples the merge copies per read: 2 MB stays in cache (measured best)
_NAMED = 5  # skipped or quiet clips named in a log message before "and N more"
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


def source_key(path: str | Path) -> str:
    """``"<size>:<mtime_ns>"`` of an audio file (``"missing"`` if absent): what a cached clip is tied to."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def describe_clips(rows: Sequence[tuple[str, str]], limit: int = _NAMED) -> str:
    """``"a.wav (reason), b.wav (reason) and 3 more"``: the first ``limit`` (fname, reason) rows, then a count."""
    named = ", ".join(f"{fname} ({reason})" for fname, reason in rows[:limit])
    return named + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


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
        if not f.attrs.get("complete", False):
            raise OSError("incomplete file (its writer never finished)")
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
        # fname -> source key of every clip, cached or skipped
        self.source_keys: dict[str, str] = dict(zip(self.fnames, f["source_keys"].asstr()[()]))
        self.source_keys.update(zip((s[0] for s in self.skipped), f["skipped_source_keys"].asstr()[()]))
        n = len(self.fnames)
        sizes = [len(self.offsets), len(self.lengths), len(self.untrimmed_lengths), len(self.length_feature),
                 len(f["global_features"]), len(f["source_keys"])]
        end = int((self.offsets + self.lengths).max()) if n else 0
        if any(size != n for size in sizes) or len(self.source_keys) != n + len(self.skipped) \
                or end > len(f["samples"]):
            raise OSError(f"inconsistent datasets ({n} fnames, per-clip arrays {sizes}, samples end {end} "
                          f"of {len(f['samples'])})")

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
    note: str = ""  # kept, but worth a warning


class _Shard(NamedTuple):
    """A worker's task: decode ``jobs`` and write them as one part file in ``parts_dir``."""
    jobs: list[tuple[str, str, AudioConfig]]
    keys: dict[str, str]  # source key of each job's file
    parts_dir: Path
    audio: AudioConfig


def _decode_shard(shard: _Shard) -> tuple[Path, list[tuple[str, str]]]:
    """Worker: decode a shard, write its part file; returns the part and the (fname, note) rows worth a warning."""
    clips = [_process_clip(job) for job in shard.jobs]
    return _write_part(shard.parts_dir, clips, shard.keys, shard.audio), [(c.fname, c.note) for c in clips if c.note]


def _process_clip(job: tuple[str, str, AudioConfig]) -> _Clip:
    """Worker: decode, resample, trim, quantize and compute features for one clip."""
    fname, path, audio = job
    try:
        y = load_audio(path, audio.sample_rate)
        trimmed, _, _ = trim_silence(y, audio.trim_top_db)
        if trimmed.size == 0:  # nothing above the threshold: a quiet clip is still a clip
            trimmed = y
        pcm = quantize_pcm16(trimmed, PCM_SCALE)
        note = ""
        if not pcm.any() and trimmed.any():
            note = (f"peak {np.abs(trimmed).max():.1e} is below the int16 cache's resolution (1/{2 * PCM_SCALE:.0f}): "
                    "its waveform is stored as silence (global features keep the float audio); "
                    "normalise the file to keep it")
        return _Clip(fname, "", pcm, len(y), global_features(y, audio.global_steps), note)
    except AudioDecodeError as err:
        return _Clip(fname, err.reason, None, 0, None)
    except Exception as err:  # one odd file must never abort a build of thousands
        return _Clip(fname, f"{type(err).__name__}: {err}", None, 0, None)


def build_cache(table: ClipTable, audio: AudioConfig, cache_dir: str | Path, workers: int | None = None,
                progress: bool = True, shard_size: int = 64) -> Path:
    """Make sure the cache of ``table`` for ``audio`` holds every clip as its file is now; return its path.

    Only clips missing from the existing file and finished parts, or whose audio file changed
    since (see :func:`source_key`), are decoded, over ``workers`` processes (default: all usable
    cores; 1 decodes in this process), in shards of at most ``shard_size`` clips (the most an
    interrupt loses; a worker holds one shard in memory). If another process is building the
    same cache file, this one waits for it and then reuses its work.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    _refuse_in_a_starting_worker()
    fnames = list(table.fnames)
    paths = [str(p) for p in table.paths()]
    _check_unique(fnames, table.name)
    path = cache_path(cache_dir, table.name, audio)
    current = {fname: source_key(p) for fname, p in zip(fnames, paths)}
    # A finished file needs no lock to be read (also in a read-only folder); leftover parts need one to go.
    skipped = None if _parts_dir(path).exists() else _reusable(table.name, path, current)
    if skipped is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.with_name(path.name + ".lock"), f"waveform cache {path}", wait=True):
            skipped = _build_locked(table.name, path, fnames, paths, current, audio, workers, progress, shard_size)
    skipped = [(f, r) for f, r in skipped if f in current]
    if skipped:
        log.warning("split %s: %d clips could not be decoded and are left out: %s; report: %s", table.name,
                    len(skipped), describe_clips(skipped), report_path(path))
    return path


def _refuse_in_a_starting_worker() -> None:
    """Fail fast where a worker of this very build re-runs an unguarded script.

    Workers start by forkserver/spawn, which import the user's main script again; a script that
    calls the build at top level (no ``if __name__ == "__main__":``) would then, in every worker,
    wait forever for the lock its own parent holds.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # set while a worker imports __main__
        script = getattr(sys.modules.get("__mp_main__"), "__file__", None) or "your script"
        raise RuntimeError(f"{script}: builds the waveform cache at import time, so each of its worker "
                           "processes would build it again and wait forever; put the script's top-level "
                           "code under `if __name__ == \"__main__\":`")


def _parts_dir(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def _reusable(split: str, path: Path, current: dict[str, str]) -> list[tuple[str, str]] | None:
    """The skipped rows of the cache at ``path`` if it is whole and holds every clip of ``current`` as its
    file is now; None if it must be (re)built."""
    try:
        cache = WaveformCache(path)
    except OSError:  # missing or unreadable: the locked build decides
        return None
    with cache:
        if _fresh(cache, current) != set(current):
            return None
        log.info("split %s: reusing %s (%d clips, %d skipped)", split, path, len(cache), len(cache.skipped))
        return cache.skipped


def _build_locked(split: str, path: Path, fnames: list[str], paths: list[str], current: dict[str, str],
                  audio: AudioConfig, workers: int | None, progress: bool, shard_size: int) -> list[tuple[str, str]]:
    """The build itself, under the cache's lock; ``current`` maps every fname to its file's source key.
    Returns the (fname, reason) rows of the clips that could not be decoded."""
    parts_dir = _parts_dir(path)
    for leftover in (path, report_path(path)):  # temporary files of killed builds (we hold the lock)
        remove_stale_temps(leftover)
    for tmp in parts_dir.glob(".part-*"):
        tmp.unlink(missing_ok=True)
    skipped = _reusable(split, path, current)  # e.g. built by the process we waited for
    if skipped is not None:
        shutil.rmtree(parts_dir, ignore_errors=True)  # left over if a merge was killed after its rename
        return skipped
    final = _open_source(path)
    sources: list[WaveformCache] = [final] if final is not None else []
    sources += [c for c in map(_open_source, sorted(parts_dir.glob("*.h5"))) if c is not None]
    done = set().union(*(_fresh(c, current) for c in sources))
    changed = sum(1 for f in fnames if f not in done and any(f in c.source_keys for c in sources))
    todo = [(fname, p, audio) for fname, p in zip(fnames, paths) if fname not in done]
    if changed:
        log.info("split %s: %d clip(s) changed on disk since they were cached; decoding them again", split, changed)
    if todo:
        parts_dir.mkdir(exist_ok=True)
        new_parts = _decode_in_shards(todo, current, audio, parts_dir, workers, progress, shard_size, split)
        sources += [WaveformCache(p) for p in new_parts]

    n_cached, skipped = _merge(path, fnames, sources, audio, current)
    for source in sources:
        source.close()
    shutil.rmtree(parts_dir, ignore_errors=True)
    log.info("split %s: %d clips cached, %d skipped (%d files processed now, %d reused) -> %s",
             split, n_cached, len(skipped), len(todo), len(fnames) - len(todo), path)
    return skipped


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


def _fresh(cache: WaveformCache, current: dict[str, str]) -> set[str]:
    """Clips of ``current`` that ``cache`` holds (or skipped) as their files are now."""
    return {fname for fname, key in cache.source_keys.items() if current.get(fname) == key}


def _decode_in_shards(todo: list[tuple[str, str, AudioConfig]], keys: dict[str, str], audio: AudioConfig,
                      parts_dir: Path, workers: int | None, progress: bool, shard_size: int, split: str) -> list[Path]:
    """Decode ``todo`` in parallel; each worker writes the part files of the shards it decodes."""
    workers = max(1, min(workers or _usable_cores(), len(todo)))
    size = min(shard_size, -(-len(todo) // (4 * workers)))  # enough shards to keep every worker busy to the end
    shards = [_Shard(todo[i:i + size], {job[0]: keys[job[0]] for job in todo[i:i + size]}, parts_dir, audio)
              for i in range(0, len(todo), size)]
    written: list[Path] = []
    quiet: list[tuple[str, str]] = []
    with _ShardMapper(workers) as mapper, tqdm(total=len(todo), desc=f"caching {split}", unit="clip",
                                                 disable=not progress) as bar:
        try:
            for shard, (part, notes) in zip(shards, mapper(shards)):
                written.append(part)
                quiet += notes
                bar.update(len(shard.jobs))
        except BrokenProcessPool as error:
            raise RuntimeError(f"split {split}: a cache worker process died ({error}); its own error, if any, is "
                               f"printed above; the {len(written)} finished shards are kept in {parts_dir} and a "
                               "rerun resumes from them") from error
    if quiet:
        log.warning("split %s: %d clip(s) kept but worth a look: %s", split, len(quiet), describe_clips(quiet))
    return written


def _exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker soon after the process that started the pool dies.

    A worker blocked on its task queue never notices a SIGKILLed parent (it holds that queue's write
    end itself), so a killed ``prepare`` would leave the whole pool alive. A daemon thread polls
    twice a second whether the pool's owner (and the worker's own parent, the fork server) still exist.
    """
    direct_parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != direct_parent or not _alive(parent_pid):
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class _ShardMapper:
    """Context manager yielding an ordered ``map(_decode_shard, shards)``, in-process or over workers.

    Workers start by 'forkserver' (clean processes, not forks of a parent that may have
    TensorFlow loaded); a worker that dies breaks the pool instead of hanging (the build then says so). On any
    exit, including Ctrl-C, queued clips are cancelled; if this process is killed, the workers
    exit by themselves (:func:`_exit_with_parent`).
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> Callable[[list[_Shard]], Iterator[tuple[Path, list[tuple[str, str]]]]]:
        if self.workers == 1:
            return lambda shards: map(_decode_shard, shards)
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            # The server imports the decoders (and the feature kernels) once; every later pool forks warm workers.
            context.set_forkserver_preload([__name__, "freesound_tf.data._warm_kernels"])
        else:
            context = multiprocessing.get_context("spawn")
        self.executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_exit_with_parent,
                                            initargs=(os.getpid(),))
        return lambda shards: self.executor.map(_decode_shard, shards)

    def __exit__(self, *exc: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _write_part(parts_dir: Path, shard: list[_Clip], keys: dict[str, str], audio: AudioConfig) -> Path:
    """Write one finished shard atomically; its name is a hash of its fnames and their source keys."""
    name = hashlib.sha1("\0".join(f"{c.fname}\0{keys[c.fname]}" for c in shard).encode()).hexdigest()[:16]
    path = parts_dir / f"part-{name}.h5"
    ok = [c for c in shard if not c.reason]
    _write_cache_file(
        path, audio, [c.fname for c in ok], np.array([len(c.pcm) for c in ok], np.int64),
        np.array([c.untrimmed_length for c in ok], np.int64), ((c.pcm, c.features[None]) for c in ok),
        [(c.fname, c.reason) for c in shard if c.reason], keys, durable=False)
    return path


def _merge(path: Path, order: list[str], sources: list[WaveformCache], audio: AudioConfig,
           current: dict[str, str]) -> tuple[int, list[tuple[str, str]]]:
    """Write all clips of ``sources`` into ``path`` (table order first), plus the report.

    A clip of the table comes from a source that decoded its file as it is now (``current``);
    clips the table does not list (a cache shared by a subset CSV) keep their first entry.
    """
    location: dict[str, tuple[WaveformCache, int]] = {}
    reasons: dict[str, str] = {}
    keys: dict[str, str] = {}
    for source in sources:
        skipped = dict(source.skipped)
        for fname, key in source.source_keys.items():
            if fname in keys or (fname in current and current[fname] != key):
                continue
            keys[fname] = key
            if fname in skipped:
                reasons[fname] = skipped[fname]
            else:
                location[fname] = (source, source._index[fname])
    in_table = set(order)
    fnames = [f for f in order if f in location] + [f for f in location if f not in in_table]
    skipped = [(f, reasons[f]) for f in order if f in reasons]
    skipped += [(f, r) for f, r in reasons.items() if f not in in_table]

    runs = list(_runs([location[f] for f in fnames], _RUN_SAMPLES))

    def clip_data() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # One buffer for all runs: a fresh array per read costs more in page faults than the copy itself.
        buffer = np.empty(max((run.samples for run in runs), default=0), np.int16)
        for run in runs:
            handle = run.source._handle()
            if run.samples:
                handle["samples"].read_direct(buffer, np.s_[run.offset:run.offset + run.samples], np.s_[:run.samples])
            yield buffer[:run.samples], handle["global_features"][run.first:run.first + run.count]

    lengths = np.array([location[f][0].lengths[location[f][1]] for f in fnames], np.int64)
    untrimmed = np.array([location[f][0].untrimmed_lengths[location[f][1]] for f in fnames], np.int64)
    _write_cache_file(path, audio, fnames, lengths, untrimmed, clip_data(), skipped, keys)
    _write_report(report_path(path), skipped)
    return len(fnames), skipped


class _Run(NamedTuple):
    """``count`` clips stored back to back in ``source`` from clip ``first`` (``samples`` from ``offset``)."""
    source: WaveformCache
    first: int
    count: int
    offset: int
    samples: int


def _runs(placements: list[tuple[WaveformCache, int]], max_samples: int) -> Iterator[_Run]:
    """Group consecutive (source, clip) placements that are consecutive in their source too, so the merge
    copies a part (or an unchanged stretch of the old cache) in reads and writes of up to ``max_samples``, not
    two per clip. A single clip longer than that is one run."""
    i = 0
    while i < len(placements):
        source, first = placements[i]
        offset = int(source.offsets[first])
        end = offset + int(source.lengths[first])
        j = i + 1
        while (j < len(placements) and placements[j][0] is source and placements[j][1] == first + j - i
               and end + int(source.lengths[placements[j][1]]) - offset <= max_samples):
            end += int(source.lengths[placements[j][1]])
            j += 1
        yield _Run(source, first, j - i, offset, end - offset)
        i = j


def _write_cache_file(path: Path, audio: AudioConfig, fnames: list[str], lengths: np.ndarray,
                      untrimmed: np.ndarray, blocks: Iterable[tuple[np.ndarray, np.ndarray]],
                      skipped: list[tuple[str, str]], keys: dict[str, str], durable: bool = True) -> None:
    """Write the layout described in the module doc to a temp file, then rename it to ``path``.

    ``blocks`` yields (samples, (k, steps, 12) features) of the next k clips, in order, back to back.
    Part files are not synced (``durable=False``): one that a power cut tears fails to open and its
    clips are decoded again, so only the finished cache pays for the sync."""
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(lengths) else lengths
    steps, n_feat = audio.global_steps, len(GLOBAL_FEATURE_NAMES)
    with atomic_path(path, durable=durable) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update({"format_version": FORMAT_VERSION, "key": cache_key(audio),
                        **dataclasses.asdict(audio)})
        # Contiguous (unchunked) so a crop is one hyperslab read. Blocks are written as they come (one clip
        # or a run of clips): gathering them into bigger writes costs a copy, more than HDF5's per-call overhead.
        samples = f.create_dataset("samples", shape=(int(lengths.sum()),), dtype=np.int16)
        features = f.create_dataset("global_features", shape=(len(fnames), steps, n_feat), dtype=np.float32)
        sample, clip = 0, 0
        for pcm, feats in blocks:
            if len(pcm):
                samples[sample:sample + len(pcm)] = pcm
            features[clip:clip + len(feats)] = feats
            sample, clip = sample + len(pcm), clip + len(feats)
        if (sample, clip) != (len(samples), len(fnames)):  # never renamed into place: no torn cache
            raise RuntimeError(f"{path}: wrote {clip} clips / {sample} samples, expected "
                               f"{len(fnames)} / {len(samples)}")
        f["offsets"], f["lengths"], f["untrimmed_lengths"] = offsets, lengths, untrimmed
        f["length_feature"] = (lengths / (audio.length_norm_seconds * audio.sample_rate)).astype(np.float32)
        f.create_dataset("fnames", data=list(fnames), dtype=_STR)
        f.create_dataset("source_keys", data=[keys[name] for name in fnames], dtype=_STR)
        f.create_dataset("skipped_fnames", data=[s[0] for s in skipped], dtype=_STR)
        f.create_dataset("skipped_reasons", data=[s[1] for s in skipped], dtype=_STR)
        f.create_dataset("skipped_source_keys", data=[keys[s[0]] for s in skipped], dtype=_STR)
        f.attrs["complete"] = True  # last: a file without it was never finished


def _write_report(path: Path, skipped: list[tuple[str, str]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["fname", "reason"])
        writer.writerows(skipped)
