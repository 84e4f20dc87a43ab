"""What every architecture must do, checked the same way for each: train a step, round-trip as
``.keras`` with identical outputs, export a SavedModel that serves in a process that never imports
freesound_tf or kapre."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

_SERVE = """
import json, sys
import numpy as np
import tensorflow as tf
root, names = sys.argv[1], sys.argv[2:]
loaded = {name: tf.saved_model.load(root + "/" + name) for name in names}  # keep alive while serving
scores = {name: loaded[name].serve(dict(np.load(root + "/" + name + ".npz"))).numpy().tolist() for name in names}
leaked = [m for m in sys.modules if m.split(".")[0] in ("freesound_tf", "kapre")]
print(json.dumps({"scores": scores, "leaked": leaked}))
"""


def train_one_step(model: keras.Model, batch: dict[str, np.ndarray], labels: np.ndarray,
                   loss: str | keras.losses.Loss = "binary_crossentropy") -> float:
    """Compile with Adam, run one train step; the loss must be finite and some weight must move."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    before = [w.copy() for w in model.get_weights()]
    value = float(np.asarray(model.train_on_batch(batch, labels)).reshape(-1)[0])
    assert np.isfinite(value), f"{model.name}: loss {value}"
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights())), f"{model.name}: no update"
    return value


def assert_keras_round_trip(model: keras.Model, batch: dict[str, np.ndarray], tmp_path: Path) -> None:
    """Saved and reloaded as ``.keras``, the model gives bit-identical inference outputs."""
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(restored.predict_on_batch(batch), model.predict_on_batch(batch))


def assert_serves_without_library(models: dict[str, tuple[keras.Model, dict[str, np.ndarray]]],
                                  root: Path, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Export every model as a SavedModel under ``root`` and serve them all in one clean process."""
    for name, (model, batch) in models.items():
        model.export(root / name, format="tf_saved_model", verbose=False)
        np.savez(root / f"{name}.npz", **batch)
    result = subprocess.run([sys.executable, "-c", _SERVE, str(root), *models], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["leaked"] == []
    for name, (model, batch) in models.items():
        np.testing.assert_allclose(np.array(served["scores"][name]), model.predict_on_batch(batch),
                                   rtol=rtol, atol=atol, err_msg=name)
