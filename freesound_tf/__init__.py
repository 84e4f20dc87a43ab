"""freesound_tf: audio tagging with Keras 3 / TensorFlow, rebuilt from the Freesound Kaggle solutions.

``import freesound_tf`` registers every custom Keras object of the library (our layers, kapre's,
losses, metrics, the stacker's layers), so ``keras.models.load_model`` reads any ``.keras`` file
the library writes with no further import. Submodules are attributes loaded on first use.

    run = freesound_tf.load_run("runs/se")      # a finished run folder
    scores = run.predict([clip], sample_rate=44100)   # (clips, classes), run.class_names
"""
from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

_SUBMODULES = {
    "augmentation", "cli", "config", "data", "evaluate", "export", "inference", "layers", "losses",
    "metrics", "models", "recipes", "stacking", "training",
}
# Modules whose import registers Keras serializables (every class a saved model may name).
_KERAS_OBJECT_MODULES = ("models", "stacking.layers", "export.features_layer", "export.tflite", "losses",
                         "metrics")


def register_keras_objects() -> None:
    """Register the library's (and kapre's) layers, losses and metrics with Keras; runs on import."""
    for name in _KERAS_OBJECT_MODULES:
        importlib.import_module(f"{__name__}.{name}")


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_keras_objects()

from freesound_tf.training.run_folder import RunInfo, load_run  # noqa: E402  (after the registration above)

__all__ = ["RunInfo", "load_run", "register_keras_objects"]
