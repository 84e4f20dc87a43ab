"""Start a model from another run's weights, layer by layer (``train.init_from``).

Serves seed 001's "resume from saved weights" (the same architecture trained further) and seed
002's two-stage training (a full model started from its mel-only stage): layers are matched by
name and copied when every weight has the same shape; the rest keep their fresh initialisation.
"""
from __future__ import annotations

import logging
from pathlib import Path

import keras

from freesound_tf.config import ConfigError

log = logging.getLogger(__name__)


def source_checkpoint(run_dir: Path, stage_name: str) -> Path:
    """``run_dir/<stage_name>/best.keras`` ("pretrain" or "fold<k>"); a missing one fails in one line."""
    path = Path(run_dir) / stage_name / "best.keras"
    if not path.exists():
        raise ConfigError(f"train.init_from: {path} not found; point init_from at a finished run folder "
                          f"that has the stage {stage_name!r} (same folds)")
    return path


def copy_matching_layers(target: keras.Model, source: keras.Model) -> list[str]:
    """Copy the weights of every same-named, same-shaped layer of ``source`` into ``target``."""
    by_name = {layer.name: layer for layer in source.layers}
    copied = []
    for layer in target.layers:
        other = by_name.get(layer.name)
        if other is None or not layer.weights:
            continue
        weights = other.get_weights()
        if [w.shape for w in weights] == [tuple(v.shape) for v in layer.weights]:
            layer.set_weights(weights)
            copied.append(layer.name)
    return copied


def initialise_from_run(model: keras.Model, run_dir: Path, stage_name: str) -> list[str]:
    """Copy matching layers from ``run_dir``'s ``stage_name`` best checkpoint; names the layers copied."""
    path = source_checkpoint(run_dir, stage_name)
    source = keras.models.load_model(path, compile=False)
    copied = copy_matching_layers(model, source)
    if not copied:
        raise ConfigError(f"train.init_from: no layer of {path} matches the model {model.name!r} by name and "
                          "shape; init_from needs a run of the same or a related architecture")
    skipped = [layer.name for layer in model.layers if layer.weights and layer.name not in copied]
    log.info("%s: %d layers from %s, %d freshly initialised (%s)", model.name, len(copied), path,
             len(skipped), ", ".join(skipped[:8]))
    return copied
