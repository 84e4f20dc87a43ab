"""Batch-level mixup on raw waveforms (and the inputs that travel with them).

One call mixes one batch. Which examples mix, with whom and how much:

* ``scope="batch"`` (seed 004's loader): with probability ``prob`` (one draw per batch) the whole
  batch is mixed with a shuffled copy of itself, ``x_i <- lam * x_i + (1 - lam) * x_perm(i)`` for a
  uniformly random permutation ``perm`` of the batch, one ``lam`` for the whole batch. A fixed
  point of the permutation mixes an example with itself, which leaves it unchanged.
* ``scope="example"``: each example independently, with probability ``prob``, is mixed with
  ``x_perm(i)`` at its own ``lam``; examples not drawn, and fixed points, stay unchanged.

``lam`` is the weight of the example itself: ``mode="fixed"`` uses ``lam`` as given (seed 004: 0.7
on raw audio), ``mode="beta"`` draws it from Beta(alpha, alpha), ``mode="uniform"`` from
U(uniform_range) (seed 001: [0, 0.5], the partner dominates). Labels follow ``label_rule``:
``"blend"`` mixes them with the same weight as the audio (so label smoothing applied before or
after gives the same targets), ``"or"`` keeps every label of both clips (element-wise max).
``side_inputs`` says what happens to the inputs other than ``waveform`` (global features, length):
``"keep"`` (seed 004) leaves each example its own, ``"blend"`` mixes them like the audio.
"""
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
    scope: str = "example",
    side_inputs: str = "blend",
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Mix a batch as the module docstring describes; returns new inputs and labels (inputs untouched)."""
    n = labels.shape[0]
    if n < 2 or prob <= 0.0:
        return inputs, labels

    def draw(size: int | None):
        if mode == "fixed":
            return lam if size is None else np.full(size, lam, np.float32)
        if mode == "uniform":
            return rng.uniform(uniform_range[0], uniform_range[1], size)
        return rng.beta(alpha, alpha, size)

    if scope == "batch":
        if rng.random() >= prob:
            return inputs, labels
        partner = rng.permutation(n)
        weight = np.full(n, draw(None), np.float32)
    else:
        mixed = rng.random(n) < prob
        partner = rng.permutation(n)
        weight = np.where(mixed, np.asarray(draw(n), np.float32), np.float32(1.0))
    weight = np.where(partner != np.arange(n), weight, np.float32(1.0))  # mixed with itself: unchanged

    def blend(x: np.ndarray) -> np.ndarray:
        w = weight.reshape((n,) + (1,) * (x.ndim - 1))
        return (w * x + (1.0 - w) * x[partner]).astype(x.dtype)

    out_inputs = {key: blend(value) if key == "waveform" or side_inputs == "blend" else value
                  for key, value in inputs.items()}
    if label_rule == "or":
        keep_partner = (weight < 1.0).reshape(n, 1)
        out_labels = np.where(keep_partner, np.maximum(labels, labels[partner]), labels)
    else:
        out_labels = blend(labels)
    return out_inputs, out_labels.astype(labels.dtype)
