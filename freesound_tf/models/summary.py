"""Parameter counts and forward FLOPs of registered models (for ``freesound-tf models``).

FLOPs come from TensorFlow's graph profiler (``float_ops``) run on the model's concrete
function for one clip: every Conv2D / MatMul / elementwise op counts, a multiply-add as 2.
Ops inside ``tf.while_loop`` bodies (the GRU time steps) are counted once rather than once per
step, which undercounts the small global-feature branch; the conv body dominates.
The FFT of the STFT is not counted by the profiler either.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from freesound_tf.config import FrontendConfig
from freesound_tf.models.registry import get, list_models, presets


def forward_flops(model: keras.Model) -> int:
    """Float ops of one forward pass (inference mode) for a batch of one; inputs need static shapes."""
    specs = tf.nest.map_structure(lambda t: tf.TensorSpec((1, *t.shape[1:]), t.dtype), model.input)
    for spec in tf.nest.flatten(specs):
        if not spec.shape.is_fully_defined():
            raise ValueError(f"forward_flops: {model.name} has an input of variable shape {spec.shape}; "
                             "build it with a fixed input length")
    concrete = tf.function(lambda inputs: model(inputs, training=False)).get_concrete_function(specs)
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # the v1 profiler warns about its own deprecated internals
    try:
        return int(tf.compat.v1.profiler.profile(graph=concrete.graph, options=options).total_float_ops)
    finally:
        logger.setLevel(level)


def model_summary_rows(input_seconds: float, sample_rate: int, n_classes: int,
                       names: list[str] | None = None) -> list[dict]:
    """One row per registered model preset: name ("cnn9/se_w1.0"), model, variant, params, forward FLOPs per clip.

    Uses the default frontend; ``names`` restricts to some registered models.
    """
    rows = []
    for name in names or list_models():
        for variant, config in presets(name).items():
            keras.backend.clear_session()
            model = get(name)(config, FrontendConfig(), n_classes, sample_rate, input_seconds=input_seconds)
            rows.append({"name": f"{name}/{variant}", "model": name, "variant": variant,
                         "params": int(model.count_params()), "flops": forward_flops(model)})
    keras.backend.clear_session()
    return rows
