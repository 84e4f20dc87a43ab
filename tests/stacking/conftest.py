"""Fake member run folders holding only what stacking reads, built from numpy arrays."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomli_w

from freesound_tf.config import Recipe, to_dict
from freesound_tf.data.layout import ClassMap


def write_run(run_dir: Path, name: str, classes: list[str], fnames: list[str], oof: np.ndarray,
              labels: np.ndarray, test_fnames: list[str], test: np.ndarray, test_labels: np.ndarray | None = None,
              multilabel: bool = True, groups: list[str] | None = None) -> Path:
    """A run folder as `train_member` leaves it, as far as stacking is concerned."""
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.toml").write_text(tomli_w.dumps(to_dict(Recipe(name=name))))
    ClassMap(tuple(classes)).to_json(run_dir / "classes.json")
    (run_dir / "task.json").write_text(json.dumps({"layout": "fat2019", "multilabel": multilabel}))
    for stem, rows, scores in (("oof", fnames, oof), ("test", test_fnames, test)):
        np.save(run_dir / f"{stem}.npy", scores.astype(np.float32))
        table = pd.DataFrame(scores, columns=classes)
        table.insert(0, "fname", rows)
        if stem == "oof" and groups is not None:
            table.insert(1, "group", groups)
        table.to_csv(run_dir / f"{stem}.csv", index=False)
    np.save(run_dir / "oof_labels.npy", labels.astype(np.float32))
    if test_labels is not None:
        np.save(run_dir / "test_labels.npy", test_labels.astype(np.float32))
    return run_dir


@pytest.fixture
def make_run(tmp_path):
    """``make_run(name, ...)`` writes ``tmp_path/name`` with ``write_run``."""
    return lambda name, *args, **kwargs: write_run(tmp_path / name, name, *args, **kwargs)
