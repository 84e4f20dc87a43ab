"""train.optimizer and its settings: the right Keras optimizer, clipping that works under loss scaling,
and a checkpoint round trip (what resuming from last.keras does) that keeps the optimizer and its state."""
from dataclasses import replace

import keras
import numpy as np
import pytest

from freesound_tf.config import ConfigError, TrainConfig, from_dict
from freesound_tf.training.optimizers import make_optimizer
from freesound_tf.training.precision import dtype_policy, loss_scaled


@pytest.mark.parametrize("settings, cls, expected", [
    ({}, keras.optimizers.Nadam, {"beta_2": 0.999}),
    ({"optimizer": "adam", "amsgrad": True, "epsilon": 1e-8}, keras.optimizers.Adam, {"amsgrad": True, "epsilon": 1e-8}),
    ({"optimizer": "adamw", "weight_decay": 0.01, "beta_2": 0.99, "global_clipnorm": 1.0}, keras.optimizers.AdamW,
     {"weight_decay": 0.01, "beta_2": 0.99, "global_clipnorm": 1.0}),
    ({"optimizer": "adamw"}, keras.optimizers.AdamW, {"weight_decay": 0.0}),  # not Keras' own 0.004
    ({"optimizer": "sgd", "momentum": 0.9, "nesterov": True}, keras.optimizers.SGD, {"momentum": 0.9, "nesterov": True}),
])
def test_recipe_picks_the_optimizer_and_its_settings(settings, cls, expected):
    optimizer = make_optimizer(from_dict(TrainConfig, settings), 1e-3)
    assert type(optimizer) is cls
    config = optimizer.get_config()
    for key, value in expected.items():
        assert config[key] == pytest.approx(value) if isinstance(value, float) else config[key] == value, key


def test_bad_optimizer_settings_name_the_key():
    for settings, key in [({"optimizer": "rmsprop"}, "train.optimizer"), ({"weight_decay": -1.0}, "train.weight_decay"),
                          ({"global_clipnorm": -1.0}, "train.global_clipnorm"), ({"beta_2": 1.0}, "train.beta_1")]:
        with pytest.raises(ConfigError, match=key):
            from_dict(TrainConfig, settings)


def _linear_model():
    # float32 even under mixed_float16 (no float16 overflow); the optimizer is still wrapped in loss scaling,
    # and clipping the still-scaled gradient would make the step 2**15 times too short.
    return keras.Sequential([keras.Input((4,)),
                             keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", dtype="float32")])


@pytest.mark.parametrize("precision", ["float32", "mixed_float16"])
def test_global_clipnorm_bounds_the_update_also_under_loss_scaling(precision):
    train = TrainConfig(optimizer="sgd", global_clipnorm=1.0, precision=precision)
    with dtype_policy(precision):
        model = _linear_model()
    model.compile(optimizer=loss_scaled(make_optimizer(train, 1.0), precision), loss="mse")
    x, y = np.full((8, 4), 10.0, np.float32), np.full((8, 1), 1000.0, np.float32)  # gradient norm 4e4
    model.train_on_batch(x, y)
    step = np.linalg.norm(np.asarray(model.get_weights()[0], np.float64))
    assert step == pytest.approx(1.0, rel=1e-3)  # lr 1 x a gradient clipped to norm 1
    unclipped = replace(train, global_clipnorm=0.0)
    with dtype_policy(precision):
        free = _linear_model()
    free.compile(optimizer=loss_scaled(make_optimizer(unclipped, 1.0), precision), loss="mse")
    free.train_on_batch(x, y)
    assert np.linalg.norm(free.get_weights()[0]) > 1e4  # the same step without clipping


@pytest.mark.parametrize("precision", ["float32", "mixed_float16"])
def test_checkpoint_round_trip_keeps_optimizer_settings_and_state(tmp_path, precision):
    train = TrainConfig(optimizer="adamw", weight_decay=0.01, beta_2=0.99, amsgrad=True, global_clipnorm=1.0,
                        precision=precision)
    with dtype_policy(precision):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1, dtype="float32")])
    model.compile(optimizer=loss_scaled(make_optimizer(train, 1e-2), precision), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype(np.float32), rng.normal(size=(16, 1)).astype(np.float32)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "last.keras")
    restored = keras.models.load_model(tmp_path / "last.keras")
    inner = restored.optimizer.inner_optimizer if precision == "mixed_float16" else restored.optimizer
    assert type(inner) is keras.optimizers.AdamW
    assert (inner.weight_decay, inner.beta_2, inner.amsgrad, inner.global_clipnorm) == (0.01, 0.99, True, 1.0)
    assert int(restored.optimizer.iterations) == int(model.optimizer.iterations) > 0  # mixed: some steps skipped
    assert len(model.optimizer.variables) == len(restored.optimizer.variables)
    for saved, loaded in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(loaded), np.asarray(saved))
    # Both continue identically: the state (moments, amsgrad maxima, step count) came back whole.
    model.train_on_batch(x[:4], y[:4])
    restored.train_on_batch(x[:4], y[:4])
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
