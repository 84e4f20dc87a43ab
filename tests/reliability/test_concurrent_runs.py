"""Two processes on one work folder share its caches safely; two trainings never share a run folder."""
import os
import signal

import h5py
import numpy as np

from freesound_tf.cli import main
from freesound_tf.config import AudioConfig
from freesound_tf.data.cache import build_cache, cache_path
from freesound_tf.data.layout import load_layout
from freesound_tf.locking import file_lock
from freesound_tf.training.run_folder import lock_run_folder
from tests.reliability.conftest import write_recipe
from tests.reliability.helpers import children, cli_command, script_command

AUDIO = AudioConfig(sample_rate=8000)


def _datasets(path):
    with h5py.File(path, "r") as f:
        return {name: f[name][()] for name in ("samples", "offsets", "global_features", "fnames")}


def test_prepare_processes_started_together_on_a_new_work_folder_build_one_whole_cache(medium_demo, tmp_path):
    """The reported failure: one process died with BlockingIOError and the other cached hundreds of
    clips as zeros. Now all finish and the cache equals one built by a single process. (Four
    processes: with two, the old code's collisions depended on timing and were missed now and then.)"""
    recipe = write_recipe(tmp_path / "tiny.toml")
    work = tmp_path / "work"
    command = cli_command("prepare", "--input", medium_demo, "--work", work, "--recipe", recipe, "--workers", "1",
                          "--quiet")
    with children(*[command] * 4) as started:
        codes = [child.finish(240) for child in started]
    assert codes == [0] * 4, "\n".join(child.output[-2000:] for child in started)
    table = load_layout(medium_demo).splits["curated"]
    reference = build_cache(table, AUDIO, tmp_path / "serial", workers=1, progress=False)
    shared, alone = _datasets(cache_path(work / "cache", "curated", AUDIO)), _datasets(reference)
    for name in alone:
        np.testing.assert_array_equal(shared[name], alone[name], err_msg=name)


def test_a_process_that_needs_a_cache_being_built_waits_then_reuses_it(medium_demo, tmp_path):
    recipe = write_recipe(tmp_path / "tiny.toml")
    work = tmp_path / "work"
    table = load_layout(medium_demo).splits["curated"]
    path = cache_path(work / "cache", "curated", AUDIO)
    building = file_lock(path.with_name(path.name + ".lock"), "test", wait=False)
    building.__enter__()  # this process is "building" the curated cache
    try:
        with children(cli_command("prepare", "--input", medium_demo, "--work", work, "--recipe", recipe,
                                  "--workers", "1", "--quiet")) as (other,):
            assert other.wait_for(lambda out: f"in use by pid {os.getpid()}; waiting" in out, 60), other.output
            assert other.proc.poll() is None  # it waits instead of failing or building beside us
            build_cache(table, AUDIO, work / "cache", workers=1, progress=False)  # re-entrant: we hold the lock
            built_at = len(other.output)
            building.__exit__(None, None, None)
            building = None
            assert other.finish(120) == 0, other.output
    finally:
        if building is not None:
            building.__exit__(None, None, None)
    assert f"split curated: reusing {path}" in other.output[built_at:], other.output


def test_train_refuses_a_run_folder_in_use_and_the_lock_dies_with_its_holder(medium_demo, tmp_path, capsys):
    run = tmp_path / "run"
    holder_source = (f"from freesound_tf.training.run_folder import lock_run_folder\n"
                     f"with lock_run_folder({str(run)!r}):\n"
                     f"    print('locked', flush=True)\n"
                     f"    import time; time.sleep(300)\n")
    with children(script_command(holder_source)) as (holder,):
        assert holder.wait_for(lambda out: "locked" in out, 60), holder.output
        code = main(["train", "--recipe", str(write_recipe(tmp_path / "tiny.toml")), "--input", str(medium_demo),
                     "--work", str(tmp_path / "work"), "--run-dir", str(run), "--quiet"])
        error = capsys.readouterr().err.strip()
        assert code == 2
        assert error == (f"freesound-tf train: error: run folder {run} in use by pid {holder.proc.pid}; "
                         "wait for it or pass another --run-dir")
        assert not (tmp_path / "work").exists()  # refused before any data work
        holder.proc.send_signal(signal.SIGKILL)
        holder.proc.wait(30)
    with lock_run_folder(run):  # kill -9 released it: free at once, nothing to clean up by hand
        pass
