"""Training losses (serializable Keras losses) and a name-based factory.

Every loss takes probabilities, since the models end in sigmoid/softmax, and computes in
float32 even under a mixed-precision policy (``y_pred`` is cast first). Keep the model's
last activation in float32 as Keras advises: float16 probabilities saturate near 0 and 1.
"""
from __future__ import annotations

import keras
from keras import ops

_SERIALIZABLE = keras.saving.register_keras_serializable(package="freesound_tf")
F2_THRESHOLD = 0.2  # seed 001's f2cl: F2 of the scores above this


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

    Per class: ``y * alpha * (1 - p)**gamma * -log(p) + (1 - y) * (1 - alpha) * p**gamma * -log(1 - p)``;
    ``alpha=None`` drops the class balancing. For 0/1 targets that is the usual
    ``-alpha_t (1 - p_t)**gamma log(p_t)``. A soft target weights the positive and the negative focal term
    linearly, which is exactly the mixup loss of seed 001 (``a * FL(y1) + (1 - a) * FL(y2)`` for the
    blended target ``a * y1 + (1 - a) * y2``); Keras' focal loss instead focuses on the blended p_t.
    ``gamma=0, alpha=None`` is plain binary cross-entropy, soft targets included.
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
        eps = keras.config.epsilon()
        p = ops.clip(y_pred, eps, 1.0 - eps)
        positive = ops.power(1.0 - p, self.gamma) * -ops.log(p)
        negative = ops.power(p, self.gamma) * -ops.log1p(-p)
        if self.alpha is not None:
            positive, negative = positive * self.alpha, negative * (1.0 - self.alpha)
        return ops.mean(y_true * positive + (1.0 - y_true) * negative, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


@_SERIALIZABLE
class AdaptedLoss(keras.losses.Loss):
    """A per-clip loss ``inner``, times ``scale`` (times the number of score columns with ``class_sum``:
    a mean over classes becomes their sum), with targets narrower than the scores padded with zeros, and
    optionally seed 001's in-batch F2 filter.

    ``class_sum`` and ``scale`` give seed 001's losses (focal summed over classes, BCE x 100), which
    matter under gradient clipping. Zero padding makes extra score columns negatives for every clip:
    the flip classes of seed 001 (see :class:`freesound_tf.layers.flip_views.FlipViews`).
    ``f2_below > 0`` is seed 001's f2cl as its loss does it: the batch's loss is the mean over the clips
    whose F2 (scores above 0.2 against the possibly mixed targets: 5 TP / (4 sum(y) + predicted)) is
    below ``f2_below``; a batch without any such clip contributes 0.
    """

    def __init__(self, inner: keras.losses.Loss, scale: float = 1.0, class_sum: bool = False,
                 f2_below: float = 0.0, name: str = "adapted_loss", reduction: str = "sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        self.inner = inner if isinstance(inner, keras.losses.Loss) else keras.losses.deserialize(inner)
        self.scale = float(scale)
        self.class_sum = bool(class_sum)
        self.f2_below = float(f2_below)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        extra = ops.shape(y_pred)[-1] - ops.shape(y_true)[-1]
        if not isinstance(extra, int) or extra:
            y_true = ops.pad(y_true, [[0, 0], [0, extra]])
        loss = self.inner.call(y_true, y_pred) * self.scale
        if self.class_sum:
            loss = loss * ops.cast(ops.shape(y_pred)[-1], loss.dtype)
        if self.f2_below > 0:
            predicted = ops.cast(ops.cast(y_pred, "float32") > F2_THRESHOLD, "float32")
            tp = ops.sum(predicted * y_true, axis=-1)
            f2 = 5.0 * tp / ops.maximum(4.0 * ops.sum(y_true, axis=-1) + ops.sum(predicted, axis=-1), 1e-9)
            keep = ops.cast(f2 < self.f2_below, loss.dtype)
            # Keras divides the sum by the batch size: rescale so the result is the mean over kept clips.
            batch = ops.cast(ops.shape(loss)[0], loss.dtype)
            loss = loss * keep * batch / ops.maximum(ops.sum(keep), 1.0)
        return loss

    def get_config(self) -> dict:
        return {**super().get_config(), "inner": keras.losses.serialize(self.inner), "scale": self.scale,
                "class_sum": self.class_sum, "f2_below": self.f2_below}


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


def recipe_loss(train, extra_columns: bool = False) -> keras.losses.Loss:
    """The training loss of a ``TrainConfig``: ``train.loss`` with its options, wrapped in
    :class:`AdaptedLoss` for ``class_reduction = "sum"``, ``loss_scale``, ``f2_mask_below`` or a model
    with extra score columns (``extra_columns``)."""
    options = {}
    if train.loss == "bce_smooth":
        options = {"smoothing": train.label_smoothing}
    elif train.loss == "cce":
        options = {"label_smoothing": train.label_smoothing}
    elif train.loss == "focal":
        options = {"gamma": train.focal_gamma, "alpha": train.focal_alpha}
    loss = get_loss(train.loss, **options)
    class_sum = train.class_reduction == "sum"
    if class_sum or train.loss_scale != 1.0 or train.f2_mask_below > 0 or extra_columns:
        loss = AdaptedLoss(loss, train.loss_scale, class_sum, train.f2_mask_below)
    return loss


def get_loss(name: str, **kwargs) -> keras.losses.Loss:
    """Build a loss by name: "bce", "bce_smooth", "focal", "lsep" or "cce"; kwargs go to it."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(_FACTORIES)}")
    try:
        return _FACTORIES[name](**kwargs)
    except TypeError as error:
        raise ValueError(f"bad options {kwargs} for loss {name!r}: {error}") from None
