"""Mixed precision and XLA: half-precision body with a float32 frontend and output, agreement with the
float32 model on the same weights, loss scaling that survives a checkpoint, no leaked global policy,
and a mixed + XLA member run that exports to a float32 SavedModel."""
from __future__ import annotations

import json
from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf

from freesound_tf.config import FoldsConfig, StageConfig, TrainConfig
from freesound_tf.losses import get_loss
from freesound_tf.models import build_model
from freesound_tf.training.precision import dtype_policy, loss_scaled
from tests.conftest import TINY_SR, tiny_recipe

HALF = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
# Largest score difference to the float32 model on the same weights and inputs: one unit of the
# format's relative precision (bfloat16 2**-8, float16 2**-11). Measured here on CPU: 4.8e-4 and 6.7e-5
# (the scores of this untrained model are 0.42-0.64, so the sigmoid's slope is ~0.25).
SCORE_ATOL = {"mixed_bfloat16": 2.0**-8, "mixed_float16": 2.0**-11}
RECIPE = tiny_recipe("precision", "se")  # no GRU branch: tracing its train step alone costs seconds
N_CLASSES = 6


def _build(precision: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    with dtype_policy(precision):
        return build_model(RECIPE, N_CLASSES)


def _compile(model: keras.Model, precision: str, jit_compile: bool = False) -> None:
    optimizer = loss_scaled(keras.optimizers.Nadam(1e-3), precision)
    model.compile(optimizer=optimizer, loss=get_loss("bce"), jit_compile=jit_compile)


def _policies(model: keras.Model) -> dict[str, str]:
    """Layer name -> dtype policy of every computing layer, those of nested models (the frontend) included."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.update({f"{layer.name}/{k}": v for k, v in _policies(layer).items()})
        elif not isinstance(layer, keras.layers.InputLayer):
            out[layer.name] = layer.dtype_policy.name
    return out


@pytest.fixture(scope="module")
def batch() -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(TINY_SR) / TINY_SR
    tones = np.sin(2 * np.pi * np.outer([220, 440, 880, 1760], t))
    inputs = {"waveform": (0.3 * tones + 0.05 * rng.standard_normal(tones.shape)).astype(np.float32),
              "length": rng.random((4, 1)).astype(np.float32)}
    return inputs, (rng.random((4, N_CLASSES)) < 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def reference(batch) -> tuple[list[np.ndarray], np.ndarray]:
    """Weights and inference scores of the float32 model (computed before anything trains it)."""
    model = _build("float32")
    return model.get_weights(), model.predict_on_batch(batch[0])


def test_policy_scope_restores_the_previous_global_policy():
    before = keras.config.dtype_policy()
    with dtype_policy("mixed_float16"):
        assert keras.config.dtype_policy().name == "mixed_float16"
    assert keras.config.dtype_policy() is before
    with pytest.raises(RuntimeError), dtype_policy("mixed_bfloat16"):
        raise RuntimeError("the policy is restored on errors too")
    assert keras.config.dtype_policy() is before
    with pytest.raises(ValueError, match="train.precision"), dtype_policy("float64"):
        pass


@pytest.mark.parametrize("precision", HALF)
def test_half_precision_body_float32_ends_and_float32_agreement(precision, batch, reference):
    inputs, labels = batch
    model = _build(precision)
    assert keras.config.dtype_policy().name == "float32"  # nothing leaked into the caller
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 7 and all(layer.compute_dtype == HALF[precision] for layer in convs)
    assert all(w.dtype == "float32" for w in model.weights)  # mixed: half compute, float32 variables
    # Tensor dtypes along the graph: float32 waveform -> float32 log-mel -> half conv maps -> float32 scores.
    probe = keras.Model(model.inputs, [model.get_layer("stem_conv").input, model.get_layer("stem_conv").output,
                                       model.get_layer("classifier_logits").output, model.output])
    mel, stem, logits, scores = probe(inputs, training=False)
    assert (mel.dtype, stem.dtype, logits.dtype, scores.dtype) == ("float32", HALF[precision], HALF[precision],
                                                                  "float32")
    frontend = model.get_layer("frontend")
    assert all(layer.compute_dtype == "float32" for layer in frontend.layers
               if not isinstance(layer, keras.layers.InputLayer))

    weights, expected = reference
    model.set_weights(weights)
    got = model.predict_on_batch(inputs)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=SCORE_ATOL[precision])
    assert not np.array_equal(got, expected)  # it really computed in half precision

    _compile(model, precision)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "mixed_float16")
    loss = float(model.train_on_batch(inputs, labels))
    assert np.isfinite(loss) and 0.3 < loss < 2.0, loss


def test_xla_train_step_matches_the_plain_one(batch, reference):
    inputs, labels = batch
    losses = {}
    for jit in (False, True):
        model = _build("float32")
        model.set_weights(reference[0])
        _compile(model, "float32", jit_compile=jit)
        assert model.jit_compile is jit
        # train_on_batch reports the running mean since compile: step 2 checks the update too.
        losses[jit] = [float(model.train_on_batch(inputs, labels)) for _ in range(2)]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)
    assert losses[True][0] != losses[True][1]


def test_checkpoint_keeps_policy_and_loss_scaling_under_a_float32_global_policy(batch, tmp_path):
    """mixed_float16, the case with optimizer state of its own (mixed_bfloat16: see the member test)."""
    inputs, labels = batch
    precision = "mixed_float16"
    model = _build(precision)
    _compile(model, precision)
    model.train_on_batch(inputs, labels)
    model.save(tmp_path / "last.keras")
    restored = keras.models.load_model(tmp_path / "last.keras")  # as fit_stage resumes, global policy float32
    assert _policies(restored) == _policies(model)
    assert _policies(model)["stem_conv"] == precision and _policies(model)["frontend/stft"] == "float32"
    np.testing.assert_array_equal(restored.predict_on_batch(inputs), model.predict_on_batch(inputs))
    assert type(restored.optimizer) is type(model.optimizer)
    saved, loaded = model.optimizer.variables, restored.optimizer.variables  # .keras restores them in order
    assert [v.name for v in loaded] == [v.name for v in saved]
    for before, after in zip(saved, loaded):
        np.testing.assert_array_equal(after.numpy(), before.numpy(), err_msg=before.name)
    assert float(restored.optimizer.dynamic_scale) == float(model.optimizer.dynamic_scale) > 1.0


@pytest.mark.runs_first
def test_mixed_bfloat16_xla_member_trains_and_exports_float32(tmp_path):
    from freesound_tf.data.demo import make_demo_dataset
    from freesound_tf.data.prepare import prepare_data
    from freesound_tf.export import export_run
    from freesound_tf.training.member import train_member
    from tests.export.helpers import library_scores, random_clips

    recipe = tiny_recipe("mixed_xla", "se")
    # 12 train / 12 val clips per fold, batch 12: one XLA program each for training and for the 3-crop validation.
    recipe = replace(recipe, folds=FoldsConfig(n_splits=2, seed=0), pipeline=replace(recipe.pipeline, batch_size=12),
                     train=TrainConfig(finetune=StageConfig(epochs=1), precision="mixed_bfloat16", jit_compile=True))
    demo = make_demo_dataset(tmp_path / "demo", seed=5, sample_rate=TINY_SR, n_curated=24, n_noisy=1, n_test=1)
    data = prepare_data(demo, recipe.audio, tmp_path / "work", splits=["curated"], workers=1, progress=False)
    result = train_member(recipe, data, tmp_path / "run", verbose=0)
    assert keras.config.dtype_policy().name == "float32"
    assert np.isfinite(result.oof).all() and 0.0 < result.metrics["oof_lwlrap"] <= 1.0
    assert all(np.isfinite(v) for v in result.metrics["oof_lwlrap_per_fold"].values())
    assert json.loads((tmp_path / "run" / "fold1" / "done.json").read_text())["epochs"] == 1

    # The checkpoint fit_stage resumes from is mixed and XLA-compiled again.
    last = keras.models.load_model(tmp_path / "run" / "fold0" / "last.keras")
    assert last.jit_compile is True and last.get_layer("stem_conv").compute_dtype == "bfloat16"

    clips = random_clips((5000, 13001))
    serve = tf.saved_model.load(str(export_run([tmp_path / "run"], tmp_path / "export"))).signatures["serving_default"]
    expected = library_scores(tmp_path / "run", clips)
    for clip, want in zip(clips, expected):
        scores = serve(waveform=tf.constant(clip[None, :], tf.float32))["scores"]
        assert scores.dtype == tf.float32
        np.testing.assert_allclose(scores.numpy()[0], want, atol=1e-4)
