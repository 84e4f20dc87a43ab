"""Batch-level mixup on raw waveforms (and the inputs that travel with them)."""
from __future__ import annotations

import numpy as np


def mixup_batch(
    inputs: dict[str, np.ndarray],
    labels: np.ndarray,
    rng: np.random.Generator,
    prob: float,
    mode: str = "fixed",
    lam: float = 0.7,
    alpha: float = 0.4,
    label_rule: str = "blend",
    uniform_range: tuple[float, ...] = (0.0, 1.0),
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Mix each example, with probability ``prob``, with a random partner from the same batch.

    ``mode="fixed"`` uses the constant weight ``lam`` for the example itself (seed 004 mixes raw
    audio with 0.7); ``mode="beta"`` draws the weight from Beta(alpha, alpha) per example;
    ``mode="uniform"`` from U(uniform_range) per example (seed 001: [0, 0.5], the partner dominates).
    Labels follow ``label_rule``: ``"blend"`` weights them like the audio, ``"or"`` keeps every label
    of both clips (element-wise max). Every float input (waveform, global features, length) is
    blended with the same weight, so the side inputs stay consistent with the mixed audio.
    """
    n = labels.shape[0]
    if n < 2 or prob <= 0.0:
        return inputs, labels
    mixed = rng.random(n) < prob
    partner = rng.permutation(n)
    if mode == "fixed":
        weight = np.full(n, lam, np.float32)
    elif mode == "uniform":
        weight = rng.uniform(uniform_range[0], uniform_range[1], n).astype(np.float32)
    else:
        weight = rng.beta(alpha, alpha, n).astype(np.float32)
    # Examples that are not mixed (or drew themselves as partner) keep weight 1.
    weight = np.where(mixed & (partner != np.arange(n)), weight, np.float32(1.0))

    def blend(x: np.ndarray) -> np.ndarray:
        w = weight.reshape((n,) + (1,) * (x.ndim - 1))
        return (w * x + (1.0 - w) * x[partner]).astype(x.dtype)

    out_inputs = {key: blend(value) for key, value in inputs.items()}
    if label_rule == "or":
        keep_partner = (weight < 1.0).reshape(n, 1)
        out_labels = np.where(keep_partner, np.maximum(labels, labels[partner]), labels)
    else:
        out_labels = blend(labels)
    return out_inputs, out_labels.astype(labels.dtype)
