"""The stacker at initialisation is the weighted-mean blend; a saved stacker reloads identically."""
import keras
import numpy as np

from freesound_tf.metrics import lwlrap
from freesound_tf.stacking.blends import weighted_mean_blend
from freesound_tf.stacking.model import build_stacker

WEIGHTS = [2.1, 1.9, 1.0]


def _member_scores(n=64, classes=12, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, classes)) < 0.2).astype(np.float32)
    labels[np.arange(n), rng.integers(0, classes, n)] = 1
    scores = np.clip(labels[None] * 0.3 + rng.random((len(WEIGHTS), n, classes)) * 0.7, 0, 1).astype(np.float32)
    return scores, labels


def test_at_init_the_locally_connected_layer_outputs_the_weighted_mean_channel():
    scores, _ = _member_scores()
    model = build_stacker(scores.shape[2], WEIGHTS, shift=1.6)
    x = scores.transpose(1, 2, 0)
    probe = keras.Model(model.input, [model.get_layer("append_weighted_mean").output,
                                      model.get_layer("per_class_blend").output])
    channels, picked = (np.asarray(t) for t in probe(x))
    np.testing.assert_array_equal(picked[..., 0], channels[..., -1])  # exactly the mean channel
    np.testing.assert_allclose(picked[..., 0], weighted_mean_blend(scores, WEIGHTS), rtol=1e-6, atol=1e-7)


def test_at_init_the_stacker_is_a_monotone_map_of_the_weighted_mean_blend():
    scores, labels = _member_scores()
    model = build_stacker(scores.shape[2], WEIGHTS, shift=1.6)
    out = np.asarray(model(scores.transpose(1, 2, 0)))
    blend = weighted_mean_blend(scores, WEIGHTS)
    # Identity Dense then (tanh(x - 1.6) + 1) / 2.
    np.testing.assert_allclose(out, (np.tanh(blend - 1.6) + 1) / 2, rtol=1e-5, atol=1e-6)
    assert lwlrap(labels, out) == lwlrap(labels, blend)


def test_saved_stacker_reloads_with_the_same_outputs(tmp_path):
    scores, labels = _member_scores()
    x = scores.transpose(1, 2, 0)
    model = build_stacker(scores.shape[2], WEIGHTS, shift=1.6)
    model.compile(optimizer=keras.optimizers.Nadam(learning_rate=0.05), loss="binary_crossentropy")
    model.fit(x, labels, batch_size=32, epochs=2, verbose=0)  # move the weights away from their init
    model.save(tmp_path / "stacker.keras")
    loaded = keras.models.load_model(tmp_path / "stacker.keras", compile=False)
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-7)
    assert not np.allclose(np.asarray(model(x)), np.asarray(build_stacker(scores.shape[2], WEIGHTS)(x)))


def test_without_label_correlation_only_the_per_class_blend_is_learned():
    scores, _ = _member_scores()
    classes, members = scores.shape[2], len(WEIGHTS)
    small = build_stacker(classes, WEIGHTS, shift=1.6, label_correlation=False)
    full = build_stacker(classes, WEIGHTS, shift=1.6)
    assert small.count_params() == classes * (members + 1)
    assert full.count_params() == classes * (members + 1) + classes * classes
    x = scores.transpose(1, 2, 0)
    np.testing.assert_allclose(np.asarray(small(x)), np.asarray(full(x)), rtol=1e-6, atol=1e-7)  # same at init
