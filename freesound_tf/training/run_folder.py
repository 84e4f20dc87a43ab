"""A self-describing run folder: resolved recipe, code version, command, environment, class map."""
from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path

import tomli_w

from freesound_tf.config import ConfigError, Recipe, load_recipe, to_dict
from freesound_tf.data.layout import ClassMap, DataLayout


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


def open_run_folder(run_dir: Path, recipe: Recipe) -> bool:
    """Create ``run_dir`` for ``recipe`` or check that an existing one was made by the same recipe.

    Returns True when resuming. A folder made by a different recipe is never overwritten.
    """
    recipe_file = run_dir / "recipe.toml"
    if recipe_file.exists():
        previous = load_recipe(recipe_file)
        if previous != recipe:
            raise ConfigError(f"{run_dir}: this run folder was made with a different recipe "
                              f"(see {recipe_file}); pass another --run-dir or delete the folder to start over")
        return True
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe_file.write_text(tomli_w.dumps(to_dict(recipe)))
    return False


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
    with open(run_dir / "runs.jsonl", "a") as f:
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
    fold_models: tuple[Path, ...]

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
    (run_dir / "task.json").write_text(json.dumps({"layout": layout.kind, "multilabel": layout.multilabel}))


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
    # A fold retrained on its validation clips (train.retrain_on_val_epochs) scores new clips with that model.
    models = tuple(p.parent / "retrained.keras" if (p.parent / "retrained.keras").exists() else p.parent / "best.keras"
                   for p in folds)
    return RunInfo(run_dir, load_recipe(run_dir / "recipe.toml"), ClassMap.from_json(run_dir / "classes.json"),
                   task["layout"], task["multilabel"], models)
