"""Exports shared by the export tests (a SavedModel export costs seconds): built once per test run."""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from freesound_tf.export import export_run
from freesound_tf.training.run_folder import load_run


@pytest.fixture(scope="package")
def stack_dir(tiny_runs, tmp_path_factory) -> Path:
    """A two-fold stacker in the `freesound-tf stack` format, its fold models made to differ."""
    from freesound_tf.stacking import build_stacker

    out = tmp_path_factory.mktemp("stack")
    classes = list(load_run(tiny_runs[0]).classes.names)
    names = []
    for k in range(2):
        model = build_stacker(len(classes), [1.0, 3.0], shift=0.5 + k)
        dense = model.get_layer("label_correlation")
        dense.kernel.assign(dense.kernel.numpy() + 0.05 * np.random.default_rng(k).standard_normal(dense.kernel.shape))
        model.save(out / f"stacker_fold{k}.keras")
        names.append(f"stacker_fold{k}.keras")
    members = [{"name": p.name, "run_dir": str(p.resolve()), "weight": w} for p, w in zip(tiny_runs, (1.0, 3.0))]
    (out / "stack.json").write_text(json.dumps({"format": 1, "members": members, "classes": classes,
                                                "fold_models": names}))
    return out


@pytest.fixture(scope="package")
def exports(tiny_runs, stack_dir, tmp_path_factory) -> dict[str, Path]:
    """SavedModels of the two tiny members: their mean, and their stack."""
    root = tmp_path_factory.mktemp("exports")
    return {"mean": export_run(tiny_runs, root / "mean"), "stacked": export_run([], root / "stacked", stack_dir)}


@pytest.fixture(scope="package")
def stacker_folds(stack_dir) -> list[keras.Model]:
    return [keras.models.load_model(stack_dir / f"stacker_fold{k}.keras") for k in range(2)]
