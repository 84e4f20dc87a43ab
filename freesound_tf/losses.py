"""Training losses (serializable Keras losses) and a name-based factory.

Every loss takes probabilities, since the models end in sigmoid/softmax, and computes in
float32 even under a mixed-precision policy (``y_pred`` is cast first). Keep the model's
last activation in float32 as Keras advises: float16 probabilities saturate near 0 and 1.
"""
from __future__ import annotations

import keras
from keras import ops

_SERIALIZABLE = keras.saving.register_keras_serializable(package="freesound_tf")


def _as_float32(y_true, y_pred):
    return ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")


@_SERIALIZABLE
class SmoothedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy against targets ``y * (1 - smoothing) + (1 - y) * smoothing``.

    ``smoothing=0.01`` gives the FAT2019 seed's targets ``y * 0.99 + (1 - y) * 0.01``.
    """

    def __init__(self, smoothing: float = 0.01, name: str = "smoothed_binary_crossentropy",
                 reduction: str = "sum_over_batch_size"):
        if not 0.0 <= smoothing < 0.5:
            raise ValueError(f"smoothing={smoothing} must be in [0, 0.5); 0.5 would erase labels")
        super().__init__(name=name, reduction=reduction)
        self.smoothing = smoothing

    def call(self, y_true, y_pred):
        y_true, y_pred = _as_float32(y_true, y_pred)
        targets = y_true * (1.0 - self.smoothing) + (1.0 - y_true) * self.smoothing
        return keras.losses.binary_crossentropy(targets, y_pred)

    def get_config(self) -> dict:
        return {**super().get_config(), "smoothing": self.smoothing}


@_SERIALIZABLE
class FocalLoss(keras.losses.Loss):
    """Binary focal loss for multi-label sigmoid outputs (Lin et al. 2017), mean over classes.

    Per class: ``-alpha_t * (1 - p_t)**gamma * log(p_t)`` with ``p_t = p`` for a positive and
    ``1 - p`` for a negative, ``alpha_t = alpha`` / ``1 - alpha``; ``alpha=None`` drops the
    class balancing. Soft targets interpolate both terms linearly, as Keras' focal loss does.
    ``gamma=0, alpha=None`` is plain binary cross-entropy.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25, name: str = "focal_loss",
                 reduction: str = "sum_over_batch_size"):
        if gamma < 0:
            raise ValueError(f"gamma={gamma} must be >= 0")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha} must be in [0, 1] or None")
        super().__init__(name=name, reduction=reduction)
        self.gamma = gamma
        self.alpha = alpha

    def call(self, y_true, y_pred):
        y_true, y_pred = _as_float32(y_true, y_pred)
        cross_entropy = ops.binary_crossentropy(y_true, y_pred)
        p_t = y_true * y_pred + (1.0 - y_true) * (1.0 - y_pred)
        loss = ops.power(1.0 - p_t, self.gamma) * cross_entropy
        if self.alpha is not None:
            loss = loss * (y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha))
        return ops.mean(loss, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


@_SERIALIZABLE
class LSEPLoss(keras.losses.Loss):
    """Log-sum-exp pairwise ranking loss (Li et al. 2017) on the clip's logits.

    Per clip: ``log(1 + sum_{u positive, v negative} exp(s_v - s_u))``. The paper and the
    FAT2019 3rd place apply it to raw scores; the probabilities given here are turned back
    into logits ``s = log(p / (1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]``
    (``eps = keras.config.epsilon()``, so ``|s| <= ~16``). Ranking bounded probabilities
    directly would cap every pair's margin at 1 and weaken the gradient.

    Each ordered pair ``u != v`` is weighted by ``y_u * (1 - y_v)``, which is the definition
    above for 0/1 targets and lets soft (mixup/smoothed) targets rank partially. A clip
    without a positive or a negative label contributes 0. The loss is ``softplus`` of a
    log-sum-exp over the (batch, C, C) pair margins, so large scores cannot overflow.
    """

    def __init__(self, name: str = "lsep_loss", reduction: str = "sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)

    def call(self, y_true, y_pred):
        y_true, y_pred = _as_float32(y_true, y_pred)
        eps = keras.config.epsilon()
        probs = ops.clip(y_pred, eps, 1.0 - eps)
        logits = ops.log(probs) - ops.log1p(-probs)
        num_classes = ops.shape(y_pred)[-1]
        # [b, u, v]: u should be ranked above v.
        margins = logits[:, None, :] - logits[:, :, None]
        weights = y_true[:, :, None] * (1.0 - y_true[:, None, :]) * (1.0 - ops.eye(num_classes))
        has_pair = weights > 0
        # Pairs without weight get a huge finite negative exponent: exp() gives 0 and the
        # gradients stay finite (log(0) = -inf would not).
        log_weights = ops.log(ops.where(has_pair, weights, 1.0))
        exponents = ops.where(has_pair, margins + log_weights, -1e30)
        pair_lse = ops.logsumexp(exponents, axis=(1, 2))
        return ops.softplus(pair_lse)


def categorical_crossentropy(label_smoothing: float = 0.0,
                             name: str = "categorical_crossentropy") -> keras.losses.Loss:
    """Softmax cross-entropy for single-label clips (FAT2018).

    Keras smooths one-hot targets to ``y * (1 - label_smoothing) + label_smoothing / C``.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1)")
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, name=name)


_FACTORIES = {
    "bce": keras.losses.BinaryCrossentropy,
    "bce_smooth": SmoothedBinaryCrossentropy,
    "focal": FocalLoss,
    "lsep": LSEPLoss,
    "cce": categorical_crossentropy,
}


def get_loss(name: str, **kwargs) -> keras.losses.Loss:
    """Build a loss by name: "bce", "bce_smooth", "focal", "lsep" or "cce"; kwargs go to it."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(_FACTORIES)}")
    try:
        return _FACTORIES[name](**kwargs)
    except TypeError as error:
        raise ValueError(f"bad options {kwargs} for loss {name!r}: {error}") from None
