"""Two-stage k-fold training on a tiny synthesized set: run folder, OOF honesty, resume."""
import json
from dataclasses import replace

import keras
import numpy as np
import pandas as pd
import pytest

from freesound_tf.config import (
    AudioConfig, FoldsConfig, FrontendConfig, ModelConfig, PipelineConfig, Recipe, StageConfig, TrainConfig,
)
from freesound_tf.data.demo import make_demo_dataset
from freesound_tf.data.prepare import prepare_data
from freesound_tf.metrics import lwlrap
from freesound_tf.models.registry import register
from freesound_tf.training import callbacks as callbacks_module
from freesound_tf.training.member import train_member

SR = 8000


@register("test_memorizer")
def build_memorizer(config, frontend, n_classes, sample_rate, input_seconds=5.0, multilabel=True,
                    global_steps=128):
    """Looks only at the per-clip global statistics, which identify a clip: it can learn a lookup
    table of the training clips and nothing that generalizes to labels shuffled at random."""
    samples = None if input_seconds is None else int(round(input_seconds * sample_rate))
    waveform = keras.Input((samples,), name="waveform")
    stats = keras.Input((global_steps, 12), name="global_features")
    peak = keras.layers.GlobalMaxPooling1D()(keras.layers.Reshape((-1, 1))(waveform))  # one level number
    x = keras.layers.Concatenate()([keras.layers.Flatten()(stats), peak])
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dense(256, activation="relu")(x)
    scores = keras.layers.Dense(n_classes, activation="sigmoid", dtype="float32", name="scores")(x)
    return keras.Model({"waveform": waveform, "global_features": stats}, scores)


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), seed=3, sample_rate=SR,
                             n_curated=48, n_noisy=24, n_test=12)


def _tiny_recipe(**train) -> Recipe:
    return Recipe(
        name="tiny",
        audio=AudioConfig(sample_rate=SR),
        pipeline=PipelineConfig(crop_seconds=1.0, batch_size=8),
        folds=FoldsConfig(n_splits=3, seed=0),
        frontend=FrontendConfig(n_fft=256, hop_length=128, n_mels=32),
        model=ModelConfig(variant="se", stem_width=4, block_widths=(4, 8, 8), gru_units=4),
        train=TrainConfig(**train),
    )


def test_run_folder_contents_and_oof_coverage(tiny_demo, tmp_path):
    recipe = replace(_tiny_recipe(pretrain=StageConfig(epochs=1), finetune=StageConfig(epochs=2)),
                     folds=FoldsConfig(n_splits=2, seed=0))
    data = prepare_data(tiny_demo, recipe.audio, tmp_path / "work", workers=1, progress=False)
    result = train_member(recipe, data, tmp_path / "run", verbose=0)
    run = tmp_path / "run"
    for name in ["recipe.toml", "runs.jsonl", "classes.json", "task.json", "folds.csv", "oof.npy", "oof_labels.npy",
                 "oof.csv", "test.npy", "test_labels.npy",
                 "test.csv", "metrics.json", "plots/learning_curves.png", "plots/per_class_lwlrap.png",
                 "pretrain/best.keras", "pretrain/history.csv", "fold0/best.keras", "fold1/history.csv"]:
        assert (run / name).exists(), name
    assert any((run / "tensorboard").rglob("events.out.tfevents*"))
    info = json.loads((run / "runs.jsonl").read_text().splitlines()[0])
    assert {"git_commit", "command", "tensorflow", "keras"} <= set(info)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["oof_lwlrap_per_fold"]) == {"0", "1"}
    assert 0.0 < metrics["oof_lwlrap"] <= 1.0 and "test_lwlrap" in metrics
    assert not np.isnan(result.oof).any() and result.oof.shape == (48, 10)
    oof_csv = pd.read_csv(run / "oof.csv")
    assert list(oof_csv.columns[:2]) == ["fname", "fold"] and len(oof_csv) == 48
    history = pd.read_csv(run / "fold1" / "history.csv")
    assert list(history["epoch"]) == [0, 1] and {"loss", "val_lwlrap", "lr"} <= set(history.columns)
    # The Kaggle-style test file has one row per test clip and the class columns in order.
    test_csv = pd.read_csv(run / "test.csv")
    assert list(test_csv.columns[1:]) == list(data.layout.classes.names) and len(test_csv) == 12


def test_out_of_fold_predictions_never_come_from_a_model_that_saw_the_clip(tiny_demo, tmp_path):
    """Labels shuffled at random can only be memorized: a memorizer scores ~1 on clips it trained on
    and ~chance on clips it did not. If any OOF score came from a model that saw its clip, the OOF
    lwlrap would climb towards the in-sample value."""
    curated = pd.read_csv(tiny_demo / "train_curated.csv")
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for entry in tiny_demo.iterdir():
        (shuffled / entry.name).symlink_to(entry)
    (shuffled / "train_curated.csv").unlink()
    curated.assign(labels=np.random.default_rng(0).permutation(curated["labels"].to_numpy())).to_csv(
        shuffled / "train_curated.csv", index=False)

    # The last epoch is kept (best_from_epoch): choosing the best epoch by held-out lwlrap would
    # itself lift OOF above chance on random labels, which is selection, not a leak.
    recipe = replace(_tiny_recipe(pretrain=StageConfig(epochs=0),
                                  finetune=StageConfig(epochs=50, lr=3e-3, best_from_epoch=49), loss="bce"),
                     model=ModelConfig(name="test_memorizer", use_length=False))
    data = prepare_data(shuffled, recipe.audio, tmp_path / "work", splits=["curated"], workers=1, progress=False)
    result = train_member(recipe, data, tmp_path / "run", verbose=0)

    split = data.splits["curated"]
    with split.open() as cache:
        labels = split.labels(cache)
        folds = pd.read_csv(tmp_path / "run" / "folds.csv")["fold"].to_numpy()
        from freesound_tf.inference import predict_crops
        in_sample = []
        for k in range(3):
            model = keras.models.load_model(tmp_path / "run" / f"fold{k}" / "best.keras", compile=False)
            train_idx = np.flatnonzero(folds != k)
            scores = predict_crops(model, cache, train_idx, 1.0, SR, 8, 3, inputs=("waveform", "global_features"))
            in_sample.append(lwlrap(labels[train_idx], scores))
            trained_on = set((tmp_path / "run" / f"fold{k}" / "train_fnames.txt").read_text().split())
            held_out = set((tmp_path / "run" / f"fold{k}" / "val_fnames.txt").read_text().split())
            assert not trained_on & held_out
            assert held_out == {cache.fnames[i] for i in np.flatnonzero(folds == k)}
    assert min(in_sample) > 0.9, in_sample  # the memorizer does memorize ...
    assert result.metrics["oof_lwlrap"] < 0.6, result.metrics  # ... yet OOF stays near chance (~0.3)


def test_rerun_skips_finished_folds_and_resumes_an_interrupted_one(tiny_demo, tmp_path, monkeypatch):
    recipe = replace(_tiny_recipe(pretrain=StageConfig(epochs=0), finetune=StageConfig(epochs=3)),
                     folds=FoldsConfig(n_splits=2, seed=0),
                     model=ModelConfig(variant="se", stem_width=4, block_widths=(4, 8, 8), use_global_features=False))
    data = prepare_data(tiny_demo, recipe.audio, tmp_path / "work", splits=["curated"], workers=1, progress=False)
    original = callbacks_module.ClipValidation.on_epoch_end
    calls = {"n": 0}

    def interrupt_in_fold1_epoch2(self, epoch, logs=None):
        original(self, epoch, logs)
        calls["n"] += 1
        if calls["n"] == 5:  # fold 0: 3 epochs, fold 1: killed right after its 2nd epoch
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks_module.ClipValidation, "on_epoch_end", interrupt_in_fold1_epoch2)
    with pytest.raises(KeyboardInterrupt):
        train_member(recipe, data, tmp_path / "run", verbose=0)
    run = tmp_path / "run"
    assert (run / "fold0" / "done.json").exists() and not (run / "fold1" / "done.json").exists()
    fold0_done = (run / "fold0" / "done.json").stat().st_mtime_ns
    assert json.loads((run / "fold1" / "state.json").read_text())["epochs_done"] == 2

    calls["n"] = 0
    result = train_member(recipe, data, tmp_path / "run", verbose=0)
    assert calls["n"] == 1  # only fold 1's 3rd epoch ran; fold 0 was not touched
    assert (run / "fold0" / "done.json").stat().st_mtime_ns == fold0_done
    history = pd.read_csv(run / "fold1" / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2]
    assert not np.isnan(result.oof).any()


def test_a_run_folder_refuses_a_different_recipe(tiny_demo, tmp_path):
    from freesound_tf.config import ConfigError

    recipe = replace(_tiny_recipe(pretrain=StageConfig(epochs=0), finetune=StageConfig(epochs=1), folds_to_run=(0,)),
                     model=ModelConfig(name="test_memorizer", use_length=False))
    data = prepare_data(tiny_demo, recipe.audio, tmp_path / "work", splits=["curated"], workers=1, progress=False)
    train_member(recipe, data, tmp_path / "run", verbose=0)
    changed = replace(recipe, pipeline=replace(recipe.pipeline, batch_size=4))
    with pytest.raises(ConfigError, match="different recipe"):
        train_member(changed, data, tmp_path / "run", verbose=0)


def test_a_group_column_keeps_each_recording_in_one_fold(tiny_demo, tmp_path):
    """train_curated.csv with a group column: folds.csv never splits a recording, and oof.csv carries
    the groups on to stacking."""
    grouped = tmp_path / "grouped"
    grouped.mkdir()
    for entry in tiny_demo.iterdir():
        (grouped / entry.name).symlink_to(entry)
    (grouped / "train_curated.csv").unlink()
    curated = pd.read_csv(tiny_demo / "train_curated.csv")
    groups = [f"rec{i % 7}" for i in range(len(curated))]
    curated.assign(group=groups).to_csv(grouped / "train_curated.csv", index=False)

    recipe = replace(_tiny_recipe(pretrain=StageConfig(epochs=0), finetune=StageConfig(epochs=1)),
                     model=ModelConfig(name="test_memorizer", use_length=False))
    data = prepare_data(grouped, recipe.audio, tmp_path / "work", splits=["curated"], workers=1, progress=False)
    train_member(recipe, data, tmp_path / "run", verbose=0)
    folds = pd.read_csv(tmp_path / "run" / "folds.csv").set_index("fname")["fold"]
    group_of = dict(zip(curated["fname"], groups))
    assert folds.groupby(folds.index.map(group_of)).nunique().eq(1).all()
    assert folds.nunique() == 3
    oof = pd.read_csv(tmp_path / "run" / "oof.csv", keep_default_na=False)
    assert list(oof.columns[:3]) == ["fname", "group", "fold"]
    assert list(oof["group"]) == [group_of[f] for f in oof["fname"]]
