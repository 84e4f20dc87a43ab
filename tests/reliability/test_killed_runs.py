"""kill -9 at a bad moment, then rerun: the rerun finishes; nothing of the killed process lives on."""
import json
import logging
import os
import signal
import time

import keras
import pytest

from freesound_tf.locking import atomic_path
from tests.reliability.helpers import REPO, children, cli_command, descendants, running, script_command
from tests.reliability.stages import fit_tiny_stage

# In the child: the second save of last.keras (epoch 2) is killed right after its first zip entry.
_KILL_DURING_SECOND_LAST_SAVE = """
import os, signal, sys, zipfile
import keras
from tests.reliability.stages import fit_tiny_stage

saves = {"last": 0}
real_save, real_writestr = keras.Model.save, zipfile.ZipFile.writestr

def die_after_first_entry(archive, *args, **kwargs):
    real_writestr(archive, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

def save(self, filepath, *args, **kwargs):
    if "last.keras" in str(filepath):
        saves["last"] += 1
        if saves["last"] == 2:
            zipfile.ZipFile.writestr = die_after_first_entry
    return real_save(self, filepath, *args, **kwargs)

keras.Model.save = save
fit_tiny_stage(__import__("pathlib").Path(sys.argv[1]), epochs=2)
"""


def test_a_kill_while_last_keras_is_written_leaves_a_run_that_resumes(tmp_path):
    with children(script_command(_KILL_DURING_SECOND_LAST_SAVE) + [str(tmp_path)], cwd=REPO) as (child,):
        code = child.finish(300)
    assert code == -signal.SIGKILL, child.output[-3000:]
    stage = tmp_path / "run" / "stage"
    assert json.loads((stage / "state.json").read_text())["epochs_done"] == 1
    keras.models.load_model(stage / "last.keras")  # still epoch 1's checkpoint, whole

    best = fit_tiny_stage(tmp_path, epochs=2)  # the old code failed here: "File not found: .../last.keras"
    state = json.loads((stage / "state.json").read_text())
    assert state["finished"] and len(state["history"]) == 2
    keras.models.load_model(best)
    assert not [p.name for p in stage.iterdir() if p.name.startswith(".")]  # the killed temp file is not reused


def test_an_unreadable_last_checkpoint_sends_the_stage_back_to_its_best_epoch(tmp_path, caplog):
    fit_tiny_stage(tmp_path, epochs=1)
    stage = tmp_path / "run" / "stage"
    state = json.loads((stage / "state.json").read_text())
    (stage / "state.json").write_text(json.dumps({**state, "finished": False}))  # as if more epochs were due
    data = (stage / "last.keras").read_bytes()
    (stage / "last.keras").write_bytes(data[: len(data) // 2])  # e.g. a copy cut short
    with caplog.at_level(logging.WARNING):
        fit_tiny_stage(tmp_path, epochs=2)
    assert "going back to the best epoch" in caplog.text
    state = json.loads((stage / "state.json").read_text())
    assert state["finished"] and len(state["history"]) == 2 and state["epochs_done"] == 2


def test_atomic_writes_keep_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_a_killed_prepare_leaves_no_decoding_worker_behind(medium_demo, tmp_path):
    """The pool's workers block on a queue whose write end they hold themselves, so they never saw
    their parent die (~670 MB left running per killed `prepare`)."""
    # The default recipe decodes at 44.1 kHz: slow enough for the pool to be caught alive.
    with children(cli_command("prepare", "--input", medium_demo, "--work", tmp_path / "work", "--workers", "2",
                              "--quiet")) as (child,):
        pid = child.proc.pid
        deadline = time.monotonic() + 120
        while len(descendants(pid)) < 3 and time.monotonic() < deadline and child.proc.poll() is None:
            time.sleep(0.02)  # forkserver + 2 workers (+ resource tracker)
        os.kill(pid, signal.SIGSTOP)  # hold it mid-build, pool alive ...
        pool = descendants(pid)
        assert len(pool) >= 3, f"the decoding pool never appeared: {child.output[-2000:]}"
        os.kill(pid, signal.SIGKILL)  # ... and kill it there
        child.proc.wait(30)
    deadline = time.monotonic() + 15
    while any(map(running, pool)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pool if running(p)]
    for p in left:  # never leave them to the next test
        os.kill(p, signal.SIGKILL)
    assert not left, f"{len(left)} process(es) of the killed prepare still running"
