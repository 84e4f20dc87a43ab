"""A self-describing run folder: resolved recipe, code version, command, environment, class map."""
from __future__ import annotations

import contextlib
import json
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import tomli_w

from freesound_tf.config import ConfigError, Recipe, load_recipe, to_dict
from freesound_tf.data.layout import ClassMap, DataLayout
from freesound_tf.locking import file_lock, write_text_atomic

PRIORS_FILE = "class_priors.json"  # fallback scores for clips that cannot be decoded


def git_commit(repo_dir: Path | None = None) -> str:
    """HEAD commit of the code (with ``-dirty`` when uncommitted changes exist), or ``unknown``."""
    cwd = repo_dir or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


@contextlib.contextmanager
def lock_run_folder(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir`` for this process; one already held by another process raises InUseError at once.

    Two trainings writing one run folder would redo each other's work and read half-written files.
    The lock lives in ``run_dir/.lock`` and dies with its process (kill -9 included).
    """
    run_dir = Path(run_dir)
    with file_lock(run_dir / ".lock", f"run folder {run_dir}", wait=False,
                   advice="wait for it or pass another --run-dir"):
        yield


def recipe_identity(recipe: Recipe) -> Recipe:
    """What makes a run folder's results: the recipe without ``train.folds_to_run``, which only says which
    folds one invocation trains (recorded per invocation in ``runs.jsonl``), so folds can be added later."""
    return replace(recipe, train=replace(recipe.train, folds_to_run=()))


def open_run_folder(run_dir: Path, recipe: Recipe) -> bool:
    """Create ``run_dir`` for ``recipe`` or check that an existing one was made by the same recipe
    (compared by :func:`recipe_identity`).

    Returns True when resuming. A folder made by a different recipe is never overwritten.
    """
    recipe_file = run_dir / "recipe.toml"
    if recipe_file.exists():
        previous = load_recipe(recipe_file)
        if recipe_identity(previous) != recipe_identity(recipe):
            raise ConfigError(f"{run_dir}: this run folder was made with a different recipe "
                              f"(see {recipe_file}); pass another --run-dir or delete the folder to start over")
        return True
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(recipe_file, tomli_w.dumps(to_dict(recipe_identity(recipe))))
    return False


def write_priors(run_dir: Path, classes: ClassMap, labels: np.ndarray) -> None:
    """Class priors (mean label of the training clips): the documented score of a clip that cannot be decoded."""
    priors = np.asarray(labels, np.float64).mean(axis=0) if len(labels) else np.zeros(len(classes))
    write_text_atomic(run_dir / PRIORS_FILE, json.dumps(
        {"classes": list(classes.names), "priors": [round(float(p), 6) for p in priors], "clips": len(labels)},
        indent=1))


def read_priors(run_dir: Path, classes: ClassMap) -> np.ndarray:
    """The run's class priors in ``classes`` order; a one-line error says how to get them."""
    path = Path(run_dir) / PRIORS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (run folder from an older version); rerun the same "
                                "`freesound-tf train` command once, it writes the file without training again")
    data = json.loads(path.read_text())
    by_name = dict(zip(data["classes"], data["priors"]))
    return np.array([by_name[name] for name in classes.names], np.float32)


def write_run_info(run_dir: Path, extra: dict | None = None) -> None:
    """Append this invocation (command, commit, versions, time) to ``runs.jsonl``."""
    import keras
    import tensorflow as tf

    try:
        from importlib.metadata import version
        kapre_version = version("kapre")
    except Exception:  # kapre missing only matters for models that use it
        kapre_version = "not installed"
    info = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(sys.argv),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "kapre": kapre_version,
        "devices": [d.name for d in tf.config.list_logical_devices()],
        **(extra or {}),
    }
    with open(run_dir / "runs.jsonl", "a") as f:  # one short append per invocation, under the run lock
        f.write(json.dumps(info) + "\n")


@dataclass(frozen=True)
class RunInfo:
    """What a finished (or partly finished) run folder offers for prediction and stacking.

    ``run.predict(waveforms, sample_rate)`` scores raw audio as the library scores cached clips.
    """

    run_dir: Path
    recipe: Recipe
    classes: ClassMap
    layout_kind: str
    multilabel: bool
    fold_models: tuple[Path, ...]  # the models that score new clips, each fold's with equal weight

    @property
    def class_names(self) -> list[str]:
        """Class names in score column order."""
        return list(self.classes.names)

    @cached_property
    def models(self) -> list:
        """The fold models (``keras.Model``), loaded on first use and kept."""
        import keras

        return [keras.models.load_model(p, compile=False) for p in self.fold_models]

    def predict(self, waveforms, sample_rate: int):
        """(clips, classes) float32 scores of mono clips (a list of 1-D arrays of any lengths, or a 2-D
        array) at ``sample_rate``: resampled to the recipe's rate, trimmed and augmented (TTA) like the
        library's predictions, averaged over the fold models."""
        from freesound_tf.tagging import predict_waveforms

        return predict_waveforms(self, waveforms, sample_rate)


def write_task(run_dir: Path, layout: DataLayout) -> None:
    """Class map and task type, so prediction never needs the training data again."""
    layout.classes.to_json(run_dir / "classes.json")
    write_text_atomic(run_dir / "task.json", json.dumps({"layout": layout.kind, "multilabel": layout.multilabel}))


def read_task(run_dir: Path) -> dict:
    """``task.json`` of a run folder ({"layout", "multilabel"}); one-line errors name what is missing."""
    if not (run_dir / "recipe.toml").exists():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no recipe.toml); pass a folder made by "
                                "`freesound-tf train`")
    task_file = run_dir / "task.json"
    if not task_file.exists():
        raise FileNotFoundError(f"{task_file}: missing; the run never started training, rerun `freesound-tf train`")
    return json.loads(task_file.read_text())


def load_run(run_dir: str | Path) -> RunInfo:
    """Read a run folder written by ``freesound-tf train``; one-line errors name what is missing."""
    run_dir = Path(run_dir)
    task = read_task(run_dir)
    folds = tuple(sorted(run_dir.glob("fold*/done.json"), key=lambda p: int(p.parent.name[4:])))
    if not folds:
        raise FileNotFoundError(f"{run_dir}: no finished fold yet; finish training with `freesound-tf train`")
    recipe = load_recipe(run_dir / "recipe.toml")
    # A fold retrained on its validation clips (train.retrain_on_val_epochs) scores new clips with that model,
    # or with it and the original one ("mix": the plain mean over all models then mixes each fold's pair).
    models = []
    for done in folds:
        best, retrained = done.parent / "best.keras", done.parent / "retrained.keras"
        if not retrained.exists():
            models.append(best)
        else:
            models += [best, retrained] if recipe.train.retrain_test == "mix" else [retrained]
    return RunInfo(run_dir, recipe, ClassMap.from_json(run_dir / "classes.json"),
                   task["layout"], task["multilabel"], tuple(models))
