"""freesound_tf: audio tagging with Keras 3 / TensorFlow, rebuilt from the Freesound Kaggle solutions.

Submodules load on first use, so ``import freesound_tf`` stays fast and the CLI's
``--help`` does not pay for importing TensorFlow.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

_SUBMODULES = {
    "augmentation", "cli", "config", "data", "evaluate", "export", "inference", "layers", "losses",
    "metrics", "models", "stacking", "training",
}


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
