"""TTA modes: multi-length random crops and geometric-mean combining, library vs numpy vs exported graph."""
from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf

from freesound_tf.config import AudioConfig, FrontendConfig, ModelConfig, PipelineConfig, Recipe, TrainConfig
from freesound_tf.data.memory import ClipsInMemory
from freesound_tf.export.member_graph import MemberGraph
from freesound_tf.inference import combine_tta, predict_clips, tta_positions
from freesound_tf.models import build_model
from tests.export.helpers import random_clips

SR = 8000
LENGTHS = (3000, 9001, 14000)  # shorter than every window, between the two, longer than both
RECIPE = Recipe(
    audio=AudioConfig(sample_rate=SR),
    pipeline=PipelineConfig(crop_seconds=1.0, batch_size=8, eval_crops=3, seed=7),
    frontend=FrontendConfig(n_fft=256, hop_length=128, n_mels=32, deltas=True),
    model=ModelConfig(name="resnext", use_global_features=False, use_length=True,
                      options={"depths": [1, 1], "cardinality": 2, "bottleneck_width": 2, "base_width": 4}),
    train=TrainConfig(tta="multi_length", tta_lengths=(0.5, 1.25), tta_random_crops=3, tta_combine="gmean"),
)


def _model(recipe: Recipe, multilabel: bool, seed: int):
    """A variable-length model whose scores vary from crop to crop, so mean and geometric mean differ.

    At initialisation every crop gives about the same scores; the classifier is re-drawn on the
    standardised features of a few probe windows (logits of spread ~2 across them).
    """
    tf.keras.utils.set_random_seed(seed)
    model = build_model(recipe, n_classes=4, multilabel=multilabel, variable_length=True)
    layer = model.get_layer("classifier_logits")
    probes = np.stack([_window(c, SR // 2, p) for c in random_clips(LENGTHS, seed) for p in (0.0, 0.4, 0.8)])
    features = keras.Model(model.input, layer.input)({"waveform": probes, "length": np.ones((len(probes), 1))})
    mean = np.mean(features, axis=0)
    spread = np.sqrt(np.mean(np.sum((features - mean) ** 2, axis=1)))
    kernel = np.random.default_rng(seed).normal(size=layer.kernel.shape) * 2 / spread
    layer.kernel.assign(kernel.astype(np.float32))
    layer.bias.assign((-mean @ kernel).astype(np.float32))
    return model


def _window(clip: np.ndarray, length: int, position: float) -> np.ndarray:
    """The crop the library documents: offset floor(position * (|n - length| + 1)), short clips zero-padded."""
    span = abs(len(clip) - length)
    offset = min(int(np.floor(position * (span + 1))), span)
    if len(clip) >= length:
        return clip[offset:offset + length]
    out = np.zeros(length, np.float32)
    out[offset:offset + len(clip)] = clip
    return out


def _reference(model, cache: ClipsInMemory, clips, windows: list[tuple[int, float]], how: str, softmax: bool):
    """Each clip's windows scored one at a time, then combined with plain numpy."""
    rows = []
    for i, clip in enumerate(clips):
        length = cache.length_feature[i].reshape(1, 1)
        scores = np.stack([np.asarray(model({"waveform": _window(clip, n, p)[None], "length": length}))[0]
                           for n, p in windows])
        if how == "mean":
            rows.append(scores.mean(axis=0))
            continue
        g = np.prod(np.maximum(scores.astype(np.float64), 1e-7), axis=0) ** (1.0 / len(scores))
        rows.append(g / g.sum() if softmax else g)
    return np.array(rows)


def test_combine_tta_geometric_mean_of_softmax_is_softmax_of_mean_logits() -> None:
    logits = np.random.default_rng(0).standard_normal((5, 3, 6)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    mean_logits = logits.mean(axis=0)
    expected = np.exp(mean_logits) / np.exp(mean_logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(combine_tta(probs, "gmean", softmax=True), expected, rtol=1e-5)
    # Sigmoid scores: per-class geometric mean, no renormalisation; exact zeros are floored, not -inf.
    sig = np.array([[[0.5, 0.0]], [[0.2, 0.9]]], np.float32)
    np.testing.assert_allclose(combine_tta(sig, "gmean"), [[0.1 ** 0.5, (1e-7 * 0.9) ** 0.5]], rtol=1e-5)
    np.testing.assert_allclose(combine_tta(sig, "mean"), [[0.35, 0.45]], rtol=1e-6)
    np.testing.assert_array_equal(combine_tta(sig[:1], "gmean"), sig[0])


def test_tta_positions_are_seeded_per_length_and_in_range() -> None:
    a = tta_positions(5, seed=7, length_index=0)
    assert a.dtype == np.float32 and np.all((a >= 0) & (a < 1))
    np.testing.assert_array_equal(a, tta_positions(5, 7, 0))
    assert not np.array_equal(a, tta_positions(5, 7, 1)) and not np.array_equal(a, tta_positions(5, 8, 0))


def test_multi_length_gmean_matches_numpy_reference() -> None:
    clips = random_clips(LENGTHS)
    cache, model = ClipsInMemory(clips, RECIPE.audio), _model(RECIPE, multilabel=False, seed=1)
    train = RECIPE.train
    windows = [(int(round(s * SR)), float(p)) for k, s in enumerate(train.tta_lengths)
               for p in tta_positions(train.tta_random_crops, RECIPE.pipeline.seed, k)]
    got = predict_clips(model, cache, np.arange(len(clips)), RECIPE)
    expected = _reference(model, cache, clips, windows, "gmean", softmax=True)
    np.testing.assert_allclose(got, expected, atol=2e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    arithmetic = _reference(model, cache, clips, windows, "mean", softmax=True)
    assert np.abs(arithmetic - expected).max() > 1e-2  # the test can tell the two combines apart
    # Deterministic: the same clips in another order and batch size give the same rows.
    order = np.array([2, 0, 1])
    again = predict_clips(model, cache, order, replace(RECIPE, pipeline=replace(RECIPE.pipeline, batch_size=3)))
    np.testing.assert_allclose(again, got[order], atol=1e-6)


def test_fixed_crops_with_gmean_matches_numpy_reference() -> None:
    recipe = replace(RECIPE, train=TrainConfig(tta="crops", tta_combine="gmean"))
    clips = random_clips(LENGTHS, seed=3)
    cache, model = ClipsInMemory(clips, recipe.audio), _model(recipe, multilabel=True, seed=2)
    got = predict_clips(model, cache, np.arange(len(clips)), recipe)
    expected = _reference(model, cache, clips, [(SR, p) for p in (0.0, 0.5, 1.0)], "gmean", softmax=False)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("tta,combine", [("multi_length", "gmean"), ("crops", "gmean"), ("multi_length", "mean")])
def test_exported_graph_matches_library(tta: str, combine: str) -> None:
    recipe = replace(RECIPE, train=replace(RECIPE.train, tta=tta, tta_combine=combine))
    folds = [_model(recipe, multilabel=False, seed=s) for s in (4, 5)]
    clips = random_clips(LENGTHS, seed=6)
    cache = ClipsInMemory(clips, recipe.audio)
    library = np.mean([predict_clips(m, cache, np.arange(len(clips)), recipe) for m in folds], axis=0)
    graph = MemberGraph("m", recipe, folds)
    # As exported: one traced graph for any clip length (dynamic crop offsets) ...
    serve = tf.function(graph.scores, input_signature=[tf.TensorSpec((None, None), tf.float32)])
    for i, clip in enumerate(clips):
        np.testing.assert_allclose(serve(tf.constant(clip[None])).numpy()[0], library[i], atol=2e-5)
    # ... and eagerly on a known length without trimming (static offsets, as TFLite exports).
    static = MemberGraph("m", recipe, folds, trim=False)
    np.testing.assert_allclose(static.scores(tf.constant(clips[1][None])).numpy()[0], library[1], atol=2e-5)
