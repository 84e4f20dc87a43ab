"""Seed 001 (FAT2019 6th place, mnpinto/audiotagging2019) as its code trains: flipped views as extra classes
with 4-way flip TTA, focal loss (gamma 2, no alpha, summed over classes) / BCE x 100 with f2cl inside the
loss, mixup at U(0, 0.5) for the clip itself, fastai's AdamW with clipping, 1000-batch epochs."""
from pathlib import Path

import keras
import numpy as np
import pytest

from freesound_tf.augmentation import mixup_batch
from freesound_tf.config import FrontendConfig, ModelConfig, PipelineConfig, TrainConfig, load_recipe
from freesound_tf.data.pipeline import TrainInput
from freesound_tf.layers.flip_views import FlipScores, FlipViews, has_flip_views
from freesound_tf.losses import AdaptedLoss, FocalLoss, recipe_loss
from freesound_tf.models.xresnet import build_xresnet
from tests.data.test_pipeline import MemoryCache

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = {  # run.py commands of the seed's README: model, loss, epochs
    "xresnet18ssa": (18, True, "focal", 80), "xresnet34ssa": (34, True, "focal", 60),
    "xresnet18ssa_bce": (18, True, "bce", 80), "xresnet34ssa_bce": (34, True, "bce", 60),
    "xresnet34": (34, False, "focal", 90), "xresnet50_0": (50, False, "bce", 65), "xresnet50": (50, False, "bce", 65),
}


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_recipes_follow_the_seed_code(name):
    recipe = load_recipe(ROOT / "models" / f"{name}.toml")
    depth, ssa, loss, epochs = MEMBERS[name]
    options, train, stage = recipe.model.options, recipe.train, recipe.train.finetune
    assert (options["depth"], options["self_attention"], train.loss, stage.epochs) == (depth, ssa, loss, epochs)
    assert options["flip_views"] and options["upsample"] == 2 and options["stem_widths"] == [32, 64, 64]
    assert options["head"] == ("avg" if ssa else "fastai")
    assert (train.optimizer, train.weight_decay, train.beta_1, train.beta_2, train.global_clipnorm) == \
        ("adamw", 0.01, 0.9, 0.99, 1.0)
    assert (stage.steps_per_epoch, recipe.pipeline.batch_size, stage.lr, stage.lr_schedule) == (1000, 64, 0.01, "one_cycle")
    assert (stage.one_cycle_div, stage.one_cycle_final_div, stage.one_cycle_anneal) == (25.0, 2.5e5, "cos")
    assert (recipe.pipeline.mixup_mode, recipe.pipeline.mixup_uniform_range, stage.mixup_prob) == ("uniform", (0.0, 0.5), 1.0)
    assert (train.f2_mask_below, stage.f2_below) == (1.0, 0.0)
    if loss == "focal":
        assert (train.focal_gamma, train.focal_alpha, train.class_reduction, train.loss_scale) == (2.0, None, "sum", 1.0)
    else:
        assert (train.class_reduction, train.loss_scale) == ("mean", 100.0)
    assert (recipe.frontend.n_fft, recipe.frontend.hop_length, recipe.frontend.n_mels, recipe.frontend.f_min) == \
        (2560, 694, 128, 20.0)
    assert round(recipe.pipeline.crop_seconds * 44100 / 694) == 128  # base_dim 128 frames
    assert train.init_from == ("runs/xresnet50_0" if name == "xresnet50" else "")


def _focal_terms(y, p, gamma=2.0):
    return y * (1 - p) ** gamma * -np.log(p) + (1 - y) * p ** gamma * -np.log(1 - p)


def test_focal_loss_is_the_seeds_mixup_focal_loss_summed_over_classes():
    """MixupFocalLoss: a * FL(y1) + (1 - a) * FL(y2), FL summed over the classes, gamma 2, no alpha.
    (Fails on the old focal loss: alpha 0.25, mean over classes, focusing on the blended p_t.)"""
    rng = np.random.default_rng(0)
    y1, y2 = (rng.random((6, 20)) < 0.2).astype(np.float32), (rng.random((6, 20)) < 0.2).astype(np.float32)
    a = rng.uniform(0, 0.5, (6, 1)).astype(np.float32)
    p = rng.uniform(0.05, 0.95, (6, 20)).astype(np.float32)
    seed = (a * _focal_terms(y1, p) + (1 - a) * _focal_terms(y2, p)).sum(axis=1).mean()
    loss = recipe_loss(load_recipe(ROOT / "models/xresnet18ssa.toml").train)
    assert float(loss(a * y1 + (1 - a) * y2, p)) == pytest.approx(seed, rel=1e-5)


def test_bce_member_loss_is_100_times_the_mean():
    rng = np.random.default_rng(1)
    y, p = (rng.random((4, 10)) < 0.3).astype(np.float32), rng.uniform(0.05, 0.95, (4, 10)).astype(np.float32)
    mean_bce = float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
    loss = recipe_loss(load_recipe(ROOT / "models/xresnet18ssa_bce.toml").train)
    assert float(loss(y, p)) == pytest.approx(100 * mean_bce, rel=1e-4)


def test_f2cl_drops_perfectly_tagged_clips_from_the_batch_loss():
    """fbeta2(scores, mixed targets) < f2cl keeps a clip; with f2cl 1 a clip tagged exactly (scores > 0.2
    on its labels only) leaves the mean."""
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    p = np.array([[0.9, 0.1, 0.1], [0.3, 0.1, 0.1], [0.1, 0.1, 0.15]], np.float32)  # clip 0 is perfect
    loss = AdaptedLoss(FocalLoss(2.0, None), f2_below=1.0)
    per_clip = np.mean(_focal_terms(y, p), axis=1)
    assert float(loss(y, p)) == pytest.approx(per_clip[1:].mean(), rel=1e-5)
    assert float(AdaptedLoss(FocalLoss(2.0, None), f2_below=1.0)(y[:1], p[:1])) == 0.0  # nothing left: 0
    soft = 0.3 * y + 0.7 * y[[1, 2, 0]]  # mixed targets: F2 < 1 whatever the scores, every clip stays
    assert float(loss(soft, p)) == pytest.approx(np.mean(np.mean(_focal_terms(soft, p), axis=1)), rel=1e-5)


def test_uniform_mixup_weighs_the_clip_itself_at_most_half():
    """AudioMixup: a ~ U(0, 0.5) per clip, x = a x + (1 - a) x[perm], targets mixed the same way."""
    x = np.eye(64, dtype=np.float32)
    inputs, labels = mixup_batch({"waveform": x}, x.copy(), np.random.default_rng(0), 1.0, "uniform",
                                 uniform_range=(0.0, 0.5))
    own = np.diag(inputs["waveform"])
    mixed = own < 1.0
    assert mixed.sum() >= 60 and own[mixed].max() <= 0.5
    np.testing.assert_allclose(labels, inputs["waveform"])


def test_epochs_of_a_fixed_number_of_batches_drawn_with_replacement():
    cache = MemoryCache([100] * 10)
    labels = np.eye(10, dtype=np.float32)
    source = TrainInput(cache, labels, PipelineConfig(crop_seconds=1.0, batch_size=4, seed=3), 100,
                        inputs=("waveform",), steps_per_epoch=7)
    assert len(source) == 7
    epochs = source.dataset()  # fit iterates this once per epoch
    batches = [y.numpy().argmax(axis=1) for _, y in epochs]
    assert len(batches) == 7 and all(len(b) == 4 for b in batches)
    drawn = np.concatenate(batches)
    assert len(drawn) == 28 > len(set(drawn.tolist()))  # 28 draws from 10 clips: with replacement
    again = np.concatenate([y.numpy().argmax(axis=1) for _, y in epochs])
    assert not np.array_equal(drawn, again)  # every epoch draws anew
    source.set_active(np.array([2, 5]))  # f2cl-style subsets still hold
    assert set(np.concatenate([y.numpy().argmax(axis=1) for _, y in source.dataset()]).tolist()) <= {2, 5}



def test_flip_views_and_scores_follow_the_seed():
    x = np.random.default_rng(0).normal(size=(3, 5, 4, 1)).astype(np.float32)
    views = FlipViews(seed=1)
    flipped, view = views(x, training=True)
    for clip, v in enumerate(np.asarray(view).astype(int)):
        expected = x[clip]
        if v in (1, 3):
            expected = expected[::-1]  # time reversed (np.fliplr of the seed's mel x time image)
        if v in (2, 3):
            expected = expected[:, ::-1]  # mel reversed (its np.flipud)
        np.testing.assert_array_equal(np.asarray(flipped)[clip], expected)
    stacked, order = views(x, training=False)  # inference: every view of every clip, view-major
    assert np.asarray(stacked).shape == (12, 5, 4, 1) and np.asarray(order).tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    np.testing.assert_array_equal(np.asarray(stacked)[9 + 2], x[2][::-1, ::-1])

    classes = 2
    scores = np.arange(12 * 4 * classes, dtype=np.float32).reshape(12, 4 * classes)
    combined = np.asarray(FlipScores()([scores, order], training=False))
    blocks = scores.reshape(4, 3, 4, classes)  # (view, clip, block, class)
    np.testing.assert_allclose(combined, np.mean([blocks[v, :, v] for v in range(4)], axis=0))  # 4-way TTA
    rotated = np.asarray(FlipScores()([scores[:3], np.array([0, 2, 3], np.float32)], training=True))
    for clip, v in enumerate([0, 2, 3]):
        own = scores[clip].reshape(4, classes)
        np.testing.assert_array_equal(rotated[clip].reshape(4, classes), own[[(v + b) % 4 for b in range(4)]])


def test_flip_views_train_on_4x_classes_and_score_the_original_ones():
    spectrogram = keras.Input((6, 4, 1))
    flipped, view = FlipViews(seed=0)(spectrogram)
    scores = keras.layers.Dense(4 * 3, activation="sigmoid")(keras.layers.Flatten()(flipped))
    model = keras.Model(spectrogram, FlipScores()([scores, view]))
    assert has_flip_views(model) and model.output_shape == (None, 3)
    x = np.random.default_rng(0).normal(size=(8, 6, 4, 1)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(8) % 3]
    model.compile(optimizer="adam", loss=recipe_loss(TrainConfig(loss="focal", class_reduction="sum"), True))
    assert np.isfinite(model.train_on_batch(x, y))  # (8, 3) targets against (8, 12) training scores
    assert model.predict(x, verbose=0).shape == (8, 3)


def test_xresnet_flip_views():
    options = {"depth": 18, "base_width": 4, "stem_widths": [4, 4, 4], "flip_views": True, "head": "avg"}
    config = ModelConfig(name="xresnet", use_global_features=False, use_length=False, options=options)
    model = build_xresnet(config, FrontendConfig(n_fft=256, hop_length=128, n_mels=32), 5, 8000, 1.0)
    assert has_flip_views(model) and model.output_shape == (None, 5)
    wave = {"waveform": np.random.default_rng(0).normal(size=(2, 8000)).astype(np.float32)}
    assert model(wave, training=True).shape == (2, 20) and model(wave, training=False).shape == (2, 5)
    keras.backend.clear_session()


@pytest.mark.parametrize("head, layer", [("avg", "pool_avg"), ("fastai", "head_dense")])
def test_heads(head, layer):
    options = {"depth": 18, "base_width": 4, "stem_widths": [4, 4, 4], "head": head}
    model = build_xresnet(ModelConfig(name="xresnet", use_global_features=False, use_length=False, options=options),
                          FrontendConfig(n_fft=256, hop_length=128, n_mels=32), 5, 8000, 1.0)
    names = {lay.name for lay in model.layers}
    assert layer in names and ("pool_max" in names) == (head == "fastai")
    if head == "fastai":
        assert model.get_layer("head_dense").units == 512 and model.get_layer("classifier_dropout").rate == 0.5
