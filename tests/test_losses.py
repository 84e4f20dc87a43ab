"""Tests for freesound_tf.losses against numpy formulas, direct loops and Keras' own losses."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from freesound_tf.losses import (  # noqa: E402
    FocalLoss, LSEPLoss, SmoothedBinaryCrossentropy, categorical_crossentropy, get_loss)

EPS = keras.config.epsilon()


def sample(seed=0, n_clips=6, n_classes=5):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((n_clips, n_classes)) < 0.4).astype("float32")
    y_true[0] = 0           # no positive
    y_true[1] = 1           # no negative
    y_pred = rng.uniform(0.02, 0.98, (n_clips, n_classes)).astype("float32")
    return y_true, y_pred


def numpy_bce(targets, probs):
    probs = np.clip(probs.astype(np.float64), EPS, 1 - EPS)
    return -(targets * np.log(probs) + (1 - targets) * np.log(1 - probs))


def test_smoothed_bce_hand_value():
    # y=1, p=0.9 -> target 0.99: -(0.99 ln 0.9 + 0.01 ln 0.1); y=0, p=0.2 -> target 0.01
    expected = (-(0.99 * np.log(0.9) + 0.01 * np.log(0.1))
                - (0.01 * np.log(0.2) + 0.99 * np.log(0.8))) / 2
    value = SmoothedBinaryCrossentropy()(np.array([[1.0, 0.0]]), np.array([[0.9, 0.2]]))
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_smoothed_bce_matches_formula_and_keras_label_smoothing():
    y_true, y_pred = sample()
    targets = y_true * 0.99 + (1 - y_true) * 0.01
    expected = numpy_bce(targets, y_pred).mean()
    assert float(SmoothedBinaryCrossentropy(0.01)(y_true, y_pred)) == pytest.approx(expected,
                                                                                   rel=1e-5)
    # Keras smooths towards 0.5: y*(1-ls) + ls/2, the same mapping with ls = 2*smoothing.
    keras_value = keras.losses.BinaryCrossentropy(label_smoothing=0.02)(y_true, y_pred)
    assert float(SmoothedBinaryCrossentropy(0.01)(y_true, y_pred)) == pytest.approx(
        float(keras_value), rel=1e-6)


def numpy_focal(y_true, y_pred, gamma, alpha):
    p = y_pred.astype(np.float64)
    p_t = np.where(y_true == 1, p, 1 - p)
    loss = (1 - p_t) ** gamma * -np.log(np.clip(p_t, EPS, 1 - EPS))
    if alpha is not None:
        loss *= np.where(y_true == 1, alpha, 1 - alpha)
    return loss.mean(axis=-1).mean()


@pytest.mark.parametrize("gamma, alpha", [(2.0, 0.25), (1.0, None), (3.0, 0.6)])
def test_focal_matches_formula_and_keras(gamma, alpha):
    y_true, y_pred = sample(1)
    value = float(FocalLoss(gamma, alpha)(y_true, y_pred))
    assert value == pytest.approx(numpy_focal(y_true, y_pred, gamma, alpha), rel=1e-5)
    keras_focal = keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=alpha is not None, alpha=alpha or 0.25, gamma=gamma)
    assert value == pytest.approx(float(keras_focal(y_true, y_pred)), rel=1e-5)


def test_focal_without_focusing_is_bce():
    y_true, y_pred = sample(2)
    soft = y_true * 0.7 + 0.1
    for targets in (y_true, soft):
        assert float(FocalLoss(gamma=0.0, alpha=None)(targets, y_pred)) == pytest.approx(
            float(keras.losses.BinaryCrossentropy()(targets, y_pred)), rel=1e-6)


def logits_of(probs):
    # Clip in float32 like the loss does: 1 - 1e-7 rounds to 1 - 1.19e-7 there.
    low, high = np.float32(EPS), np.float32(1 - EPS)
    probs = np.clip(probs.astype(np.float32), low, high).astype(np.float64)
    return np.log(probs / (1 - probs))


def lsep_by_definition(y_true, y_pred):
    """Mean over clips of log(1 + sum over ordered pairs u != v of y_u (1 - y_v) e^(s_v - s_u))."""
    losses = []
    for labels, scores in zip(y_true, logits_of(y_pred)):
        total = 0.0
        for u in range(len(labels)):
            for v in range(len(labels)):
                if u != v:
                    total += labels[u] * (1 - labels[v]) * np.exp(scores[v] - scores[u])
        losses.append(np.log1p(total))
    return np.mean(losses)


def test_lsep_hand_value():
    # Clip 1: positives {0, 2} and negative 1 all at p = 0.5 (logit 0): log(1 + 2 e^0) = log 3.
    # Clip 2: positive 0 at p = 0.75 (logit ln 3), negatives at logit 0: log(1 + 2/3).
    y_true = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    y_pred = np.array([[0.5, 0.5, 0.5], [0.75, 0.5, 0.5]])
    expected = (np.log(3.0) + np.log(1 + 2 / 3)) / 2
    assert float(LSEPLoss()(y_true, y_pred)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 3])
def test_lsep_matches_loop_hard_and_soft_targets(seed):
    y_true, y_pred = sample(seed)
    assert float(LSEPLoss()(y_true, y_pred)) == pytest.approx(lsep_by_definition(y_true, y_pred),
                                                              rel=1e-5)
    soft = y_true * 0.99 + (1 - y_true) * 0.01
    assert float(LSEPLoss()(soft, y_pred)) == pytest.approx(lsep_by_definition(soft, y_pred),
                                                            rel=1e-5)


def test_lsep_is_zero_without_pairs():
    y_pred = np.array([[0.9, 0.1, 0.4], [0.2, 0.3, 0.99]], dtype="float32")
    per_clip = LSEPLoss(reduction=None)(np.array([[0, 0, 0], [1, 1, 1]]), y_pred)
    np.testing.assert_array_equal(np.asarray(per_clip), [0.0, 0.0])


def test_lsep_stable_and_finite_gradient_for_extreme_scores():
    # Logits up to +-40 saturate float32 sigmoid; the loss sees clipped logits (|s| <= ~16).
    raw = tf.Variable([[40.0, -40.0, 3.0, -16.0], [-40.0, 40.0, 0.0, 10.0],
                       [5.0, -5.0, 1.0, 2.0]])
    y_true = np.array([[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype="float32")
    with tf.GradientTape() as tape:
        probs = tf.sigmoid(raw)
        loss = LSEPLoss()(y_true, probs)
    gradient = tape.gradient(loss, raw).numpy()
    assert np.isfinite(float(loss)) and np.isfinite(gradient).all()
    assert float(loss) == pytest.approx(lsep_by_definition(y_true, probs.numpy()), rel=1e-5)
    # Raising an unsaturated positive lowers the loss; raising a negative raises it.
    assert gradient[0, 2] < 0 and gradient[1, 2] > 0
    np.testing.assert_array_equal(gradient[2], 0.0)  # clip without positives


@pytest.mark.parametrize("loss", [SmoothedBinaryCrossentropy(), FocalLoss(), LSEPLoss(),
                                  categorical_crossentropy(0.1)])
def test_float16_predictions_computed_in_float32(loss):
    y_true, y_pred = sample(4)
    value16 = loss(y_true, y_pred.astype("float16"))
    assert value16.dtype == "float32"
    expected = loss(y_true, y_pred.astype("float16").astype("float32"))
    assert float(value16) == pytest.approx(float(expected), rel=1e-6)


def test_categorical_crossentropy_with_smoothing():
    y_true = np.eye(4, dtype="float32")[[1, 3]]
    y_pred = np.array([[0.1, 0.6, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]], dtype="float32")
    targets = y_true * 0.9 + 0.1 / 4
    expected = -(targets * np.log(y_pred)).sum(axis=1).mean()
    assert float(categorical_crossentropy(0.1)(y_true, y_pred)) == pytest.approx(expected,
                                                                                  rel=1e-5)


@pytest.mark.parametrize("name, kwargs, expected_type, attribute, value", [
    ("bce", {}, keras.losses.BinaryCrossentropy, None, None),
    ("bce_smooth", {"smoothing": 0.05}, SmoothedBinaryCrossentropy, "smoothing", 0.05),
    ("focal", {"gamma": 1.5, "alpha": None}, FocalLoss, "gamma", 1.5),
    ("lsep", {}, LSEPLoss, None, None),
    ("cce", {"label_smoothing": 0.1}, keras.losses.CategoricalCrossentropy, None, None),
])
def test_get_loss_builds_each_name(name, kwargs, expected_type, attribute, value):
    loss = get_loss(name, **kwargs)
    assert isinstance(loss, expected_type)
    if attribute:
        assert getattr(loss, attribute) == value


@pytest.mark.parametrize("name, kwargs, message", [
    ("hinge", {}, "unknown loss 'hinge'"),
    ("focal", {"smoothing": 0.1}, "bad options"),
    ("bce_smooth", {"smoothing": 0.5}, r"\[0, 0.5\)"),
    ("focal", {"alpha": 1.5}, "alpha=1.5"),
])
def test_get_loss_rejects_bad_requests(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_loss(name, **kwargs)


@pytest.mark.parametrize("loss", [SmoothedBinaryCrossentropy(0.05), FocalLoss(1.0, None),
                                  LSEPLoss()])
def test_losses_serialize_round_trip(loss):
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    y_true, y_pred = sample(6)
    assert float(restored(y_true, y_pred)) == pytest.approx(float(loss(y_true, y_pred)))


def test_compiled_model_saves_and_loads_with_custom_loss(tmp_path):
    from freesound_tf.metrics import LwlrapMetric

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="sigmoid")])
    model.compile(optimizer="adam", loss=FocalLoss(1.0, 0.4), metrics=[LwlrapMetric(4)])
    model.train_on_batch(np.ones((2, 3)), np.array([[1, 0, 0, 1], [0, 1, 0, 0]]))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.loss, FocalLoss) and restored.loss.alpha == 0.4


@pytest.mark.parametrize("name", ["bce_smooth", "focal", "lsep"])
def test_custom_losses_train_under_xla(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 4)).astype("float32")
    y = (rng.random((24, 5)) < 0.4).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=get_loss(name), jit_compile=True)
    history = model.fit(x, y, batch_size=10, epochs=5, verbose=0)  # uneven last batch
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
