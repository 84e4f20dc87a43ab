"""Fit a model's data-dependent fixed layers (e.g. ``PCAProjection``) on its training clips before training."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import keras
import numpy as np

log = logging.getLogger(__name__)


def adaptable_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Top-level layers of ``model`` with an ``adapt(features)`` method, in graph order."""
    return [layer for layer in model.layers if callable(getattr(layer, "adapt", None))]


def adapt_model(model: keras.Model, predict_inputs: Mapping[str, np.ndarray] | Iterable[Any]) -> None:
    """Run ``model``'s inputs up to each adaptable layer and call ``layer.adapt`` on what reaches it.

    ``predict_inputs``: one dict of input arrays, or a re-iterable of such batches (a ``tf.data.Dataset``;
    batches may differ in length; ``(inputs, labels)`` pairs are accepted and the labels ignored).
    Pass the training clips only, so nothing fitted here has seen a validation clip. Layers are
    adapted in graph order, so one layer's fitted output feeds the next one's fit. No-op when the
    model has no such layer.
    """
    targets = adaptable_layers(model)
    batches = [predict_inputs] if isinstance(predict_inputs, Mapping) else predict_inputs
    for layer in targets:
        features = keras.Model(model.inputs, layer.input, name=f"{layer.name}_features")
        rows = []
        for batch in batches:
            if isinstance(batch, tuple):
                batch = batch[0]
            rows.append(np.asarray(features(batch, training=False)))
        if not rows:
            raise ValueError(f"adapt_model: no inputs to fit {layer.name} of {model.name} on; "
                             "pass the stage's training clips")
        layer.adapt(np.concatenate(rows))
        log.info("%s: adapted %s on %d clips", model.name, layer.name, sum(len(r) for r in rows))
