"""train.init_from: layers copied by name and shape from another run's checkpoint."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig
from freesound_tf.models import build_cnn9, build_model
from freesound_tf.training.init_weights import copy_matching_layers, initialise_from_run
from freesound_tf.training.run_folder import load_run

TINY = ModelConfig(variant="se", stem_width=4, block_widths=(4, 8, 8), gru_units=4, use_global_features=False)


def test_matching_layers_are_copied_and_the_rest_keep_their_init() -> None:
    keras.utils.set_random_seed(1)
    source = build_cnn9(TINY, FrontendConfig(n_mels=32), 5, 8000, 1.0)
    keras.utils.set_random_seed(2)
    target = build_cnn9(TINY, FrontendConfig(n_mels=32), 7, 8000, 1.0)  # other class count: other head
    head_before = target.get_layer("classifier_logits").get_weights()
    copied = copy_matching_layers(target, source)
    assert "stem_conv" in copied and "classifier_logits" not in copied
    for name in copied:
        for a, b in zip(target.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(target.get_layer("classifier_logits").get_weights(), head_before):
        np.testing.assert_array_equal(a, b)


def test_a_model_started_from_a_run_fold_predicts_like_that_fold(tiny_runs) -> None:
    run = load_run(tiny_runs[0])
    model = build_model(run.recipe, n_classes=len(run.classes))
    initialise_from_run(model, tiny_runs[0], "fold0")
    fold0 = keras.models.load_model(tiny_runs[0] / "fold0" / "best.keras", compile=False)
    wave = np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32) * 0.1
    batch = {name: wave if name == "waveform" else np.full((2, 1), 0.3, np.float32) for name in model.input}
    np.testing.assert_allclose(model.predict_on_batch(batch), fold0.predict_on_batch(batch), rtol=1e-6, atol=1e-7)


def test_missing_stage_or_unrelated_model_fails_in_one_line(tiny_runs, tmp_path: Path) -> None:
    model = build_cnn9(TINY, FrontendConfig(n_mels=32), 5, 8000, 1.0)
    with pytest.raises(ConfigError, match="fold9.*not found"):
        initialise_from_run(model, tiny_runs[0], "fold9")
    inp = keras.Input((3,), name="other")
    unrelated = keras.Model(inp, keras.layers.Dense(2, name="nothing_alike")(inp))
    with pytest.raises(ConfigError, match="no layer"):
        initialise_from_run(unrelated, tiny_runs[0], "fold0")
