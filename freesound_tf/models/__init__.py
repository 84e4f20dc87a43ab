"""Model architectures (one file each) and the name -> builder registry.

Importing this package registers every architecture and every custom layer.
"""
from __future__ import annotations

import keras

from freesound_tf.config import Recipe, load_recipe
from freesound_tf.models import cnn9 as _cnn9  # noqa: F401  (registers "cnn9")
from freesound_tf.models import ds_cnn1d as _ds_cnn1d  # noqa: F401  (registers "ds_cnn1d")
from freesound_tf.models import ds_cnn2d as _ds_cnn2d  # noqa: F401  (registers "ds_cnn2d")
from freesound_tf.models import mobilenet_pca as _mobilenet_pca  # noqa: F401  (registers "mobilenet_pca")
from freesound_tf.models import resnext as _resnext  # noqa: F401  (registers "resnext")
from freesound_tf.models import xresnet as _xresnet  # noqa: F401  (registers "xresnet")
from freesound_tf.models.cnn9 import build_cnn9
from freesound_tf.models.registry import (
    check_model_config, get, list_models, model_config, model_options, presets, register,
)
from freesound_tf.models.summary import forward_flops, model_summary_rows
from freesound_tf.models.waveform_only import waveform_only as waveform_only_model


def build_model(recipe: Recipe | str = "se", n_classes: int = 80, multilabel: bool = True,
                variable_length: bool = False, *, waveform_only: bool = False) -> keras.Model:
    """Build ``recipe.model`` with the recipe's frontend, sample rate and global-feature steps.

    ``recipe``: a Recipe, a packaged recipe name (``"se"``, ``"xresnet18ssa"``: models/*.toml), a
    model key (``"cnn9"``) or a preset (``"msc_se_w2.0"``, ``"xresnet:xresnet34"``; with the default
    recipe's 44.1 kHz, 5 s crops). The waveform input is ``recipe.pipeline.crop_seconds`` long, or any
    length with ``variable_length=True`` (inference / export on whole clips). ``waveform_only=True``
    computes the global statistics and length in the graph: ``model.predict(waveforms)`` then works.
    """
    if isinstance(recipe, str):
        recipe = recipe_by_name(recipe)
    builder = get(recipe.model.name)
    model = builder(recipe.model, recipe.frontend, n_classes, recipe.audio.sample_rate,
                    input_seconds=None if variable_length else recipe.pipeline.crop_seconds,
                    multilabel=multilabel, global_steps=recipe.audio.global_steps)
    return waveform_only_model(model, recipe.audio) if waveform_only else model


def recipe_by_name(name: str) -> Recipe:
    """A packaged recipe (models/<name>.toml), else the default recipe around a model key or preset."""
    from freesound_tf.recipes import packaged_recipes

    packaged = packaged_recipes("member")
    if name in packaged:
        return load_recipe(packaged[name])
    return Recipe(name=name.replace(":", "_"), model=model_config(name))


__all__ = ["build_cnn9", "build_model", "check_model_config", "forward_flops", "get", "list_models", "model_config", "model_options",
           "model_summary_rows", "presets", "recipe_by_name", "register", "waveform_only_model"]
