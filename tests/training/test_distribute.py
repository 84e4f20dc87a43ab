"""tf.distribute: sharded epochs, chief-only run folders, and a real two-process multi-worker run."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from freesound_tf.config import ConfigError, PipelineConfig, StageConfig, to_dict
from freesound_tf.data.pipeline import TrainInput
from freesound_tf.training.distribute import make_distribution
from tests.conftest import TINY_SR, tiny_recipe


class _Cache:
    """Clip i is the constant i + 1, so a crop tells which clip it came from."""

    steps = 4

    def __init__(self, n: int) -> None:
        self.lengths = np.full(n, 100)
        self.length_feature = np.zeros(n, np.float32)

    def read(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        return np.full((stop or 100) - start, i + 1, np.float32)

    def read_global_features(self, indices) -> np.ndarray:
        return np.zeros((len(indices), self.steps, 12), np.float32)


def _epoch_rows(train_input: TrainInput, **shard) -> list[list[int]]:
    return [sorted(int(v) - 1 for v in x["waveform"].numpy().max(axis=1)) for x, _ in train_input.dataset(**shard)]


def test_worker_shards_partition_each_epoch_into_equal_step_counts() -> None:
    n, labels, config = 37, np.eye(3)[np.arange(37) % 3], PipelineConfig(batch_size=4, seed=3)
    make = lambda: TrainInput(_Cache(n), labels, config, 100, inputs=("waveform",))  # noqa: E731
    whole = _epoch_rows(make())
    shards = [_epoch_rows(make(), shards=2, shard=k, replicas=2) for k in (0, 1)]
    assert len(whole) == 9 and [len(s) for s in shards] == [4, 4]  # 9 batches cut to 8 for 2 replicas
    seen = [row for s in shards for b in s for row in b]
    assert len(seen) == len(set(seen)) == 32  # disjoint: no clip twice in one epoch across workers
    assert sorted(map(tuple, shards[0] + shards[1])) == sorted(map(tuple, whole[:8]))
    with pytest.raises(ValueError, match="no full batch"):
        TrainInput(_Cache(3), np.eye(3), PipelineConfig(batch_size=4), 100, inputs=("waveform",)).dataset(replicas=2)


def test_default_distribution_and_multi_worker_needs_tf_config(monkeypatch) -> None:
    default = make_distribution("default")
    assert (default.replicas, default.workers, default.is_chief) == (1, 1, True)
    assert default.global_batch(16) == 16
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        make_distribution("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        make_distribution("multi_worker")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
            if p.is_file() and "tensorboard" not in p.parts and p.name != "runs.jsonl"}


@pytest.mark.runs_first
def test_two_local_workers_train_one_member_like_one_process(tmp_path: Path, tiny_runs) -> None:
    """Two processes on loopback ports train the tiny demo member for one epoch under
    MultiWorkerMirroredStrategy; the chief's run folder has what a one-process run has, and the
    worker leaves nothing behind."""
    from freesound_tf.data.demo import make_demo_dataset
    from freesound_tf.data.prepare import prepare_data

    demo = make_demo_dataset(tmp_path / "demo", seed=5, sample_rate=TINY_SR, n_curated=32, n_noisy=8, n_test=6)
    recipe = tiny_recipe("mw")
    recipe = replace(recipe, pipeline=replace(recipe.pipeline, batch_size=4),
                     train=replace(recipe.train, finetune=StageConfig(epochs=1), strategy="multi_worker"))
    prepare_data(demo, recipe.audio, tmp_path / "work", workers=1, progress=False)  # caches built once
    recipe_path = tmp_path / "mw.toml"
    recipe_path.write_text(tomli_w.dumps(to_dict(recipe)))
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        command = [sys.executable, "-m", "freesound_tf.cli", "train", "--recipe", str(recipe_path),
                   "--input", str(demo), "--work", str(tmp_path / "work"), "--run-dir", str(tmp_path / "run"),
                   "--quiet"]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=420)[0])
    finally:
        for proc in procs:
            proc.kill()  # a hung collective must not outlive the test
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
    run = tmp_path / "run"
    assert _files(run) == _files(tiny_runs[0]), "multi-worker run folder differs from a one-process run folder"
    assert not list(run.glob(".worker*"))  # the non-chief scratch folder is removed
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["oof_clips"] == 32 and np.isfinite(metrics["oof_lwlrap"])
    history = json.loads((run / "fold0" / "state.json").read_text())["history"]
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
