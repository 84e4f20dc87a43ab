"""Model architectures (one file each) and the name -> builder registry.

Importing this package registers every architecture and every custom layer.
"""
from __future__ import annotations

import keras

from freesound_tf.config import Recipe
from freesound_tf.models import cnn9 as _cnn9  # noqa: F401  (registers "cnn9")
from freesound_tf.models import ds_cnn1d as _ds_cnn1d  # noqa: F401  (registers "ds_cnn1d")
from freesound_tf.models import ds_cnn2d as _ds_cnn2d  # noqa: F401  (registers "ds_cnn2d")
from freesound_tf.models import mobilenet_pca as _mobilenet_pca  # noqa: F401  (registers "mobilenet_pca")
from freesound_tf.models import resnext as _resnext  # noqa: F401  (registers "resnext")
from freesound_tf.models import xresnet as _xresnet  # noqa: F401  (registers "xresnet")
from freesound_tf.models.cnn9 import build_cnn9
from freesound_tf.models.registry import check_model_config, get, list_models, model_options, presets, register
from freesound_tf.models.summary import forward_flops, model_summary_rows


def build_model(recipe: Recipe, n_classes: int, multilabel: bool = True,
                variable_length: bool = False) -> keras.Model:
    """Build ``recipe.model`` with the recipe's frontend, sample rate and global-feature steps.

    The waveform input is ``recipe.pipeline.crop_seconds`` long, or any length with
    ``variable_length=True`` (inference / export on whole clips).
    """
    builder = get(recipe.model.name)
    return builder(recipe.model, recipe.frontend, n_classes, recipe.audio.sample_rate,
                   input_seconds=None if variable_length else recipe.pipeline.crop_seconds,
                   multilabel=multilabel, global_steps=recipe.audio.global_steps)


__all__ = ["build_cnn9", "build_model", "check_model_config", "forward_flops", "get", "list_models", "model_options", "model_summary_rows",
           "presets", "register"]
