"""Advisory locks between processes (``fcntl.flock`` on a lock file) and atomic file writes.

A lock file holds the pid of the process that holds the lock, so the one that finds it taken can
say who has it. The kernel drops a flock when its holder exits in any way, kill -9 included, so a
lock never outlives its process and no stale lock ever needs deleting by hand. Locks are
re-entrant within a process (``freesound-tf train`` takes the run-folder lock before preparing the
data and ``train_member`` takes it again). POSIX only.

Writes that a kill must never leave half-done go to a temporary file with a unique name in the
same folder (pid + random suffix, so two processes never write the same temporary file), are
flushed to disk, then renamed over the target in one step (:func:`atomic_path`).
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# Locks this process holds: real path -> [file descriptor, depth]. A second flock on a new open
# file description of the same file would block even inside one process, hence the bookkeeping.
_held: dict[str, list[int]] = {}
_held_guard = threading.Lock()


class InUseError(RuntimeError):
    """Another process holds the lock; ``str(e)`` names the resource, the pid and the way out."""


def _holder(fd: int) -> str:
    """The pid written in a lock file, or "unknown" while its holder has not written it yet."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"


@contextlib.contextmanager
def file_lock(path: str | Path, what: str, wait: bool, advice: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` body.

    ``what`` names the resource in messages. Taken by another process: with ``wait`` log that
    and block until it is free; without, raise :class:`InUseError` ("<what> in use by pid N;
    <advice>").
    """
    path = Path(path)
    key = os.path.realpath(path)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key][1] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise InUseError(f"{what} in use by pid {holder}" + (f"; {advice}" if advice else "")) from None
            log.warning("%s is in use by pid %s; waiting for it to finish", what, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        with _held_guard:
            _held[key] = [fd, 1]
        try:
            yield
        finally:
            with _held_guard:
                del _held[key]
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def temp_name(path: str | Path, suffix: str = ".tmp") -> Path:
    """A temporary path beside ``path`` that no other process or call uses: ``.<name>.<pid>.<random><suffix>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


def remove_stale_temps(path: str | Path) -> None:
    """Delete temporary files of ``path`` left by killed writers; call it only while holding the lock
    that guards ``path`` (then no live writer can own one)."""
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*"):
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp", durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is synced and renamed to ``path`` in one step.

    On an exception the temporary file is removed and ``path`` keeps its previous content; a kill
    leaves at most a hidden ``.<name>.<pid>.<random><suffix>`` file, never a partial ``path``.
    ``suffix`` lets writers that check the extension (Keras wants ``.keras``) accept the name.
    ``durable=False`` skips the syncs (a kill still never shows a partial file; a power cut may
    leave an empty or torn one): for files whose reader detects that and rebuilds them.
    """
    path = Path(path)
    tmp = temp_name(path, suffix)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        with contextlib.suppress(OSError):  # make the rename itself durable
            _fsync(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    """``Path(path).write_text(text)`` that a kill never leaves half-written."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
