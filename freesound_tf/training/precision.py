"""Mixed precision and XLA for training (recipe keys ``train.precision`` and ``train.jit_compile``).

Keras keeps its dtype policy in global state. The library sets it only while it builds a model
(:func:`dtype_policy`) and restores the previous one afterwards, so user code never inherits it.
A built model does not need the global policy any more: every layer stores its own policy in the
``.keras`` config, so checkpoints reload, predict and resume with the policy they were saved with
under any global policy. The log-mel frontend and the ``scores`` activation are float32 by
construction (see :mod:`freesound_tf.layers`), so a mixed model still takes float32 waveforms and
returns float32 scores; only the convolutional body (and the GRU branch) computes in half precision.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import keras

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def _check(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} unknown; set train.precision to one of {', '.join(PRECISIONS)}")


@contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """The global Keras dtype policy is ``precision`` inside the block and the previous one after it."""
    _check(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compute_dtype(precision: str) -> str:
    """The dtype the convolutional body computes in: float32, float16 or bfloat16."""
    _check(precision)
    return keras.DTypePolicy(precision).compute_dtype


def loss_scaled(optimizer: keras.optimizers.Optimizer, precision: str) -> keras.optimizers.Optimizer:
    """``optimizer`` wrapped in a dynamic ``LossScaleOptimizer`` for ``mixed_float16``, as is otherwise.

    float16 gradients underflow without loss scaling (bfloat16 has float32's exponent range and
    needs none). ``Model.compile`` would wrap the optimizer itself when the *model's* policy is
    mixed_float16, but it records the unwrapped optimizer in the compile config, and a model
    reloaded from ``last.keras`` has the global (float32) policy, so a resumed stage would train
    without scaling and drop the saved scale. Wrapped here, the scaler is part of the saved config.
    """
    _check(precision)
    if precision == "mixed_float16" and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
