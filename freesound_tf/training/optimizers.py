"""The recipe's optimizer (``train.optimizer`` and its settings), since the seeds differ.

seed 004 trains with Nadam, seed 000 with Adam (amsgrad, no weight decay), seed 001 with fastai's
AdamW (betas 0.9 / 0.99, decoupled weight decay 1e-2, gradients clipped to global norm 1), seed 002
with Adam. The learning rate given here is the stage's starting rate; the training loop sets it per
epoch or batch.
"""
from __future__ import annotations

import keras

from freesound_tf.config import TrainConfig


def make_optimizer(train: TrainConfig, learning_rate: float) -> keras.optimizers.Optimizer:
    """A fresh optimizer for ``train.optimizer`` (loss scaling is added by the caller)."""
    common = {"learning_rate": learning_rate,
              "global_clipnorm": train.global_clipnorm or None,
              "weight_decay": train.weight_decay or None}
    adam = {"beta_1": train.beta_1, "beta_2": train.beta_2, "epsilon": train.epsilon}
    if train.optimizer == "nadam":
        return keras.optimizers.Nadam(**common, **adam)
    if train.optimizer == "adam":
        return keras.optimizers.Adam(**common, **adam, amsgrad=train.amsgrad)
    if train.optimizer == "adamw":
        # AdamW's own default decay (0.004) would apply where the recipe says 0.
        return keras.optimizers.AdamW(**{**common, "weight_decay": train.weight_decay}, **adam, amsgrad=train.amsgrad)
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(**common, momentum=train.momentum, nesterov=train.nesterov)
    raise ValueError(f"train.optimizer: unknown {train.optimizer!r}; use nadam, adam, adamw or sgd")
