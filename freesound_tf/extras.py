"""Optional dependencies: the ``train`` extra (audio effects, plots, multi-label folds).

Inference, export and tagging never import them, so ``pip install freesound-tf`` (without the
extra) is enough next to a Kaggle image's TensorFlow.
"""
from __future__ import annotations

import importlib
from types import ModuleType

TRAIN_EXTRA = {"pedalboard": "pedalboard", "matplotlib": "matplotlib", "iterstrat": "iterative-stratification"}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or fail with one line naming the feature and the install command."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = TRAIN_EXTRA.get(module.split(".")[0], module)
        raise ImportError(f"{feature} needs {package}, part of the training extra: "
                          f"pip install 'freesound-tf[train]'") from None
