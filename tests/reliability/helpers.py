"""Real processes for the reliability tests: the CLI or a short script, always bounded in time and killed."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    """This checkout's code in the child (not an installed copy), no GPU, quiet TensorFlow."""
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "freesound_tf.cli", *map(str, args)]


def script_command(source: str) -> list[str]:
    return [sys.executable, "-c", source]


class Child:
    """A running process whose merged stdout/stderr is collected line by line in the background."""

    def __init__(self, command: list[str], cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(command, cwd=cwd, env=child_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> bool:
        """Poll until ``predicate(output)`` holds or the process ended; whether it held."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.output):
                return True
            if self.proc.poll() is not None:
                self._reader.join(5)
                return predicate(self.output)
            time.sleep(0.05)
        return False

    def finish(self, timeout: float) -> int:
        """The exit code; a process still running after ``timeout`` seconds is killed (the test then fails)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.proc.args} still running after {timeout} s; killed. Output:\n{self.output}")
        self._reader.join(5)
        return code


@contextmanager
def children(*commands: list[str], cwd: Path | None = None) -> Iterator[list[Child]]:
    """Start every command at once; whatever is still running at the end is killed."""
    started = [Child(c, cwd) for c in commands]
    try:
        yield started
    finally:
        for child in started:
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()


def descendants(pid: int) -> set[int]:
    """Pids of every process below ``pid`` (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an exited process its new parent has not reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
