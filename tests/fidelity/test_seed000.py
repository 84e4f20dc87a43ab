"""Seed 000 (FAT2019 3rd place, ex4sperans/freesound-classification) as its code trains: Adam (amsgrad),
linear one-cycle, whole clips up to 15 s, chunk shuffle, U(0.4, 0.6) OR-mixup before the audio effects,
and (pseudo-labelled) noisy clips added to the curated training folds only."""
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from freesound_tf.augmentation.clip_ops import shuffle_chunks
from freesound_tf.config import (
    AudioConfig, AugmentConfig, FoldsConfig, FrontendConfig, ModelConfig, PipelineConfig, Recipe, StageConfig,
    TrainConfig, load_recipe,
)
from freesound_tf.data.pipeline import TrainInput
from freesound_tf.models.registry import register
from freesound_tf.training.noisy_folds import NoisyClips
from freesound_tf.training.callbacks import one_cycle_rate
from tests.data.test_pipeline import MemoryCache

ROOT = Path(__file__).resolve().parents[2]
SEED_000 = ["ds_cnn2d", "ds_rnn2d", "ds_cnn1d", "ds_cnn2d_noisy"]


@pytest.mark.parametrize("name", SEED_000)
def test_recipes_follow_the_seed_code(name):
    recipe = load_recipe(ROOT / "models" / f"{name}.toml")
    train, stage, pipeline, augment = recipe.train, recipe.train.finetune, recipe.pipeline, recipe.augment
    assert (train.optimizer, train.amsgrad, train.weight_decay, train.epsilon) == ("adam", True, 0.0, 1e-8)
    assert (pipeline.crop_mode, pipeline.crop_seconds, pipeline.batch_size) == ("whole", 15.0, 20)
    assert (pipeline.mixup_mode, pipeline.mixup_uniform_range, pipeline.mixup_label_rule) == ("uniform", (0.4, 0.6), "or")
    assert stage.mixup_prob == 0.5 and augment.p_effects == 0.75
    assert (augment.p_pitch, augment.p_tempo, augment.p_reverb, augment.p_overdrive) == (1.0, 1.0, 1.0, 1.0)
    assert (augment.pitch_semitones, augment.tempo_range, augment.overdrive_gain_db) == ((-3, 3), (0.9, 1.1), (2, 10))
    assert augment.p_shuffle_chunks == (0.0 if recipe.model.options["aggregation"] == "rnn" else 0.5)
    assert (stage.lr_schedule, stage.one_cycle_anneal, stage.one_cycle_pct_start) == ("one_cycle", "linear", 0.3)
    assert stage.lr / stage.one_cycle_div == pytest.approx(1e-4) and stage.lr == 0.005
    assert stage.lr / stage.one_cycle_final_div == pytest.approx(1e-4 / 1e3)
    assert (train.tta, train.loss, train.pretrain.epochs) == ("full", "lsep", 0)
    noisy = name == "ds_cnn2d_noisy"
    options = recipe.model.options
    assert (options["num_conv_blocks"], options["output_dropout"], stage.epochs, stage.effects_until_epoch) == \
        ((6, 0.7, 150, 140) if noisy else (options["num_conv_blocks"], 0.5, 100, 90))
    assert train.noisy_in_finetune == ("split" if noisy else "none")
    if recipe.model.name == "ds_cnn2d":  # the seed's head is as wide as the concatenated block features
        widths = [int(100 * 1.5 ** k) for k in range(options["num_conv_blocks"])]
        per_block = 256 if options["aggregation"] == "rnn" else None
        assert options["hidden_units"] == (per_block * (len(widths) - 1) if per_block else sum(widths[1:]))


def test_linear_one_cycle_matches_the_seed_scheduler():
    """ops/training.py OneCycleScheduler: linear 1e-4 -> 5e-3 over round(0.3 x steps), then linear to 1e-7."""
    stage = load_recipe(ROOT / "models/ds_cnn2d.toml").train.finetune
    total = 1000
    mid = round(0.3 * total)

    def seed(step):
        if step < mid:
            return 1e-4 + step / mid * (5e-3 - 1e-4)
        return 5e-3 + (step - mid) / (total - mid) * (1e-7 - 5e-3)

    for step in (0, 1, 150, 299, 300, 301, 650, 999, 1000):
        assert one_cycle_rate(stage, step, total) == pytest.approx(seed(step), rel=1e-9, abs=1e-12), step


def _input(lengths, **pipeline):
    cache = MemoryCache(lengths)
    labels = np.eye(3, dtype=np.float32)[np.arange(len(lengths)) % 3]
    config = PipelineConfig(**{"crop_seconds": 3.0, "batch_size": len(lengths), "crop_mode": "whole", **pipeline})
    return TrainInput(cache, labels, config, sample_rate=100, inputs=("waveform",))


def test_whole_clips_capped_and_padded_at_the_end():
    """SampleLongAudio(max 3 s here) + zero padding to the batch's longest clip; short clips start at 0."""
    source = _input([50, 120, 700])
    waves = source._waveforms(np.array([0, 1, 2]), np.random.default_rng(0))
    assert waves.shape == (3, 300)  # the 7 s clip is cut to 3 s, the batch padded to it
    np.testing.assert_array_equal(waves[0, :50], np.arange(50))
    np.testing.assert_array_equal(waves[0, 50:], 0)
    np.testing.assert_array_equal(waves[1, :120], 1000 + np.arange(120))
    start = waves[2, 0] - 2000
    np.testing.assert_array_equal(waves[2], 2000 + start + np.arange(300))  # one contiguous window
    short = source._waveforms(np.array([0, 1]), np.random.default_rng(0))
    assert short.shape == (2, 120)  # no clip reaches the cap: as long as the longest clip


def test_whole_clip_batches_have_their_own_lengths():
    source = _input([30, 150, 260, 80], batch_size=1)
    lengths = sorted(x["waveform"].shape[1] for x, _ in source.dataset())
    assert lengths == [100, 100, 150, 260]  # each clip's own length; shorter than 1 s padded to 1 s


def test_shuffle_chunks_like_shuffle_audio():
    clip = np.arange(10, dtype=np.float32)
    out = shuffle_chunks(clip, 3, np.random.default_rng(1))  # 3 chunks: 0-3, 4-6, 7-9
    chunks = {tuple(clip[0:4]), tuple(clip[4:7]), tuple(clip[7:10])}
    parts, pos = [], 0
    for size in (4, 3, 3):
        candidates = [c for c in chunks if out[pos:pos + len(c)].tolist() == list(c)]
        assert candidates, out
        parts.append(candidates[0])
        chunks.discard(candidates[0])
        pos += len(candidates[0])
    assert sorted(out.tolist()) == clip.tolist()
    np.testing.assert_array_equal(shuffle_chunks(clip, 6, np.random.default_rng(1)), clip)  # one chunk: as is


def test_chunk_shuffle_runs_until_the_augmentations_switch_off():
    source = _input([400], crop_seconds=4.0)
    source.augment = AugmentConfig(p_shuffle_chunks=1.0, shuffle_chunk_seconds=0.5)
    source.set_effects(True)
    shuffled = source._waveforms(np.array([0]), np.random.default_rng(0))[0]
    assert sorted(shuffled.tolist()) == list(range(400)) and shuffled.tolist() != list(range(400))
    source.set_effects(False)
    np.testing.assert_array_equal(source._waveforms(np.array([0]), np.random.default_rng(0))[0], np.arange(400))


def test_audio_effects_run_on_the_mixed_clips(monkeypatch):
    """The seed applies AudioAugmentation after MixUp; the old pipeline ran the effects before mixing."""
    cache = MemoryCache([100] * 4)
    labels = np.eye(4, dtype=np.float32)
    config = PipelineConfig(crop_seconds=1.0, batch_size=4, mixup_mode="uniform", mixup_uniform_range=(0.4, 0.6))
    source = TrainInput(cache, labels, config, 100, inputs=("waveform",), mixup_prob=1.0,
                        augment=AugmentConfig(p_effects=1.0))
    seen = []
    monkeypatch.setattr(source.effects, "batch", lambda wave, rng, p: seen.append(wave.copy()) or wave)
    waveform, mixed_labels = source._load(np.arange(4), np.int64(5))
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], waveform)
    mixed = mixed_labels.max(axis=1) < 1
    assert mixed.any()
    crops = np.arange(4)[:, None] * 1000.0 + np.arange(100)  # each clip unmixed
    assert not np.allclose(seen[0][mixed], crops[mixed])  # the effects got the mixed audio


def test_uniform_mixup_weights_stay_in_range():
    from freesound_tf.augmentation import mixup_batch

    x = np.eye(64, dtype=np.float32)
    inputs, _ = mixup_batch({"waveform": x}, x.copy(), np.random.default_rng(0), 1.0, "uniform",
                            uniform_range=(0.4, 0.6))
    own = np.diag(inputs["waveform"])
    mixed = own < 1.0
    assert mixed.sum() > 55 and own[mixed].min() >= 0.4 and own[mixed].max() <= 0.6


SR = 8000


@pytest.fixture(scope="module")
def noisy_demo(tmp_path_factory):
    from freesound_tf.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("seed000")
    demo = make_demo_dataset(root / "demo", seed=5, sample_rate=SR, n_curated=24, n_noisy=18, n_test=4)
    noisy = pd.read_csv(demo / "train_noisy.csv")
    relabelled = root / "noisy_selected.csv"  # what `freesound-tf relabel` writes: a subset, labels kept
    noisy.iloc[::2].to_csv(relabelled, index=False)
    return demo, relabelled, set(noisy.iloc[::2]["fname"]), root


@register("test_fidelity_level")
def build_level_model(config, frontend, n_classes, sample_rate, input_seconds=5.0, multilabel=True, global_steps=128):
    """A model that costs nothing to trace: the clip's level -> sigmoid scores."""
    samples = None if input_seconds is None else int(round(input_seconds * sample_rate))
    waveform = keras.Input((samples,), name="waveform")
    level = keras.layers.GlobalAveragePooling1D()(keras.layers.Reshape((-1, 1))(keras.ops.abs(waveform)))
    scores = keras.layers.Dense(n_classes, activation="sigmoid", dtype="float32", name="scores")(level)
    return keras.Model({"waveform": waveform}, scores)


def _tiny(how: str) -> Recipe:
    return Recipe(
        name=f"noisy_{how}", audio=AudioConfig(sample_rate=SR),
        pipeline=PipelineConfig(crop_seconds=1.0, batch_size=8, eval_crops=1),
        folds=FoldsConfig(n_splits=3, seed=0),
        model=ModelConfig(name="test_fidelity_level", use_global_features=False, use_length=False),
        train=TrainConfig(finetune=StageConfig(epochs=1), noisy_in_finetune=how, optimizer="adam", amsgrad=True),
    )


def test_noisy_clips_join_the_training_folds_only(noisy_demo):
    """Seed 000 without --share_noisy: fold k trains on the curated training folds plus the k-th third of the
    listed noisy clips; validation and OOF are curated only."""
    from freesound_tf.data.prepare import prepare_data
    from freesound_tf.training.member import train_member

    demo, relabelled, selected, root = noisy_demo
    recipe = _tiny("split")
    data = prepare_data(demo, recipe.audio, root / "work", splits=["curated", "noisy"], workers=1, progress=False,
                        noisy_csv=relabelled)
    run = root / recipe.name
    result = train_member(recipe, data, run, verbose=0)
    curated = set(pd.read_csv(demo / "train_curated.csv")["fname"])
    parts = []
    for k in range(3):
        trained = set((run / f"fold{k}" / "train_fnames.txt").read_text().split())
        held_out = set((run / f"fold{k}" / "val_fnames.txt").read_text().split())
        assert held_out <= curated and not held_out & trained  # validation / OOF: curated only, never trained on
        assert trained & curated == curated - held_out  # every other curated clip trains
        noisy = trained - curated
        assert noisy <= selected  # only the clips the (relabelled) noisy CSV lists
        parts.append(noisy)
    assert set().union(*parts) == selected and sum(map(len, parts)) == len(selected)  # disjoint thirds
    assert min(map(len, parts)) == len(selected) // 3
    assert result.oof.shape[0] == len(curated) and not np.isnan(result.oof).any()

    # --share_noisy ("all"): every fold gets every listed clip.
    split = data.splits["noisy"]
    with split.open() as cache:
        clips = NoisyClips(cache, split.labels(cache, allow_extra=True), split.rows(cache), "all", 3, 0)
        assert all(set(clips.fold_rows(k)) == set(split.rows(cache)) for k in range(3))
