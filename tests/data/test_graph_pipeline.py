"""The in-graph training input: exact crops, uniform offsets, mixup like the numpy pipeline, seeded
determinism, worker shards, set_active and mixup_prob between epochs, continuous epochs with their
mixup schedule (and fit_stage running them), both sources, and no Python ops."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
from scipy import stats

from freesound_tf.augmentation import mixup_batch
from freesound_tf.config import AudioConfig, AugmentConfig, ConfigError, PipelineConfig, StageConfig
from freesound_tf.data import tfrecords
from freesound_tf.data.cache import WaveformCache, build_cache
from freesound_tf.data.graph_pipeline import (
    GraphTrainInput, MixupSpec, draw_mixup, make_train_input, python_ops,
)
from freesound_tf.data.joined_cache import JoinedCache
from freesound_tf.data.pipeline import EpochPlan, TrainInput

SR = 1000  # 1 s crops of 1000 samples
STEPS = 4
NOISE_LENGTHS = [400, 1000, 1003, 1500, 2200, 700, 1200, 3000, 950, 1800, 2500, 1100]
SOURCES = ["memory", "records"]


@dataclass
class Folder:
    name: str
    root: Path
    fnames: list[str]

    def paths(self) -> list[Path]:
        return [self.root / f for f in self.fnames]


def _cache(root: Path, clips: list[np.ndarray]) -> WaveformCache:
    root.mkdir(parents=True)
    names = [f"c{i:02d}.wav" for i in range(len(clips))]
    for name, clip in zip(names, clips):
        sf.write(root / name, clip.astype(np.float32), SR, subtype="FLOAT")
    audio = AudioConfig(sample_rate=SR, trim_top_db=0.0, global_steps=STEPS)
    return WaveformCache(build_cache(Folder("train", root, names), audio, root / "cache", workers=1, progress=False))


@pytest.fixture(scope="module")
def noise_cache(tmp_path_factory) -> WaveformCache:
    """Noise clips of the NOISE_LENGTHS: a crop tells where it came from."""
    rng = np.random.default_rng(0)
    return _cache(tmp_path_factory.mktemp("graph") / "noise", [rng.uniform(-0.5, 0.5, n) for n in NOISE_LENGTHS])


@pytest.fixture(scope="module")
def dc_cache(tmp_path_factory) -> WaveformCache:
    """32 constant clips (clip i is 0.01 * (i + 1)), some shorter than a crop: a mixed crop tells its weights."""
    clips = [np.full(600 + 97 * i, 0.01 * (i + 1)) for i in range(32)]
    return _cache(tmp_path_factory.mktemp("graph") / "dc", clips)


def _epoch(dataset: tf.data.Dataset) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    return [({k: v.numpy() for k, v in x.items()}, y.numpy()) for x, y in dataset]


def _take(dataset: tf.data.Dataset, n: int) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    return _epoch(dataset.take(n))


def _train(cache: WaveformCache, source: str = "memory", **kw) -> GraphTrainInput:
    config = {"crop_seconds": 1.0, "batch_size": 4, "seed": 7, **kw.pop("config", {})}
    return GraphTrainInput(cache, np.eye(len(cache), dtype=np.float32), PipelineConfig(**config), SR,
                           source=source, **kw)


def _find_window(clip: np.ndarray, wave: np.ndarray) -> int:
    """Offset of ``wave`` in ``clip`` (clip longer) or of ``clip`` in ``wave`` (zeros around it)."""
    long, short = (clip, wave) if len(clip) >= len(wave) else (wave, clip)
    for offset in np.flatnonzero(np.abs(long[:len(long) - len(short) + 1] - short[0]) < 1e-6):
        if np.allclose(long[offset:offset + len(short)], short, atol=1e-7, rtol=0):
            return offset
    raise AssertionError("no window matches")


@pytest.mark.parametrize("source", SOURCES)
def test_batches_hold_exact_crops_and_their_side_inputs(noise_cache, source) -> None:
    train = _train(noise_cache, source)
    seen = []
    for x, y in _epoch(train.dataset()):
        assert x["waveform"].shape == (4, 1000) and x["global_features"].shape == (4, STEPS, 12)
        for wave, features, length, target in zip(x["waveform"], x["global_features"], x["length"], y):
            clip = int(np.argmax(target))
            assert target[clip] == 1.0  # no mixup: one clip per row
            seen.append(clip)
            audio = noise_cache.read(clip)
            offset = _find_window(audio, wave)
            if len(audio) < 1000:  # zeros around the clip
                assert not wave[:offset].any() and not wave[offset + len(audio):].any()
            np.testing.assert_array_equal(features, noise_cache.read_global_features([clip])[0])
            assert length[0] == noise_cache.length_feature[clip]
    assert len(seen) == len(set(seen)) == 12  # every clip once per epoch


def test_a_joined_cache_serves_the_clips_of_both_parts(noise_cache, dc_cache) -> None:
    joined = JoinedCache(noise_cache, dc_cache)
    rows = np.array([0, 7, 12, 20, 43])  # both parts, the first row of the second
    train = GraphTrainInput(joined, np.eye(len(joined), dtype=np.float32),
                            PipelineConfig(crop_seconds=1.0, batch_size=5, seed=3), SR, indices=rows)
    (x, y), = _epoch(train.dataset())
    for wave, features, target in zip(x["waveform"], x["global_features"], y):
        row = int(np.argmax(target))
        _find_window(joined.read(row), wave)
        np.testing.assert_array_equal(features, joined.read_global_features([row])[0])
    assert sorted(np.argmax(y, 1)) == list(rows)


def test_crop_offsets_are_uniform_over_every_position(noise_cache) -> None:
    """Chi-square on many plans of clip 2 (1003 samples: 4 offsets of a 1000-sample crop) and clip 0
    (400 samples placed at one of 601 offsets in the crop)."""
    train = _train(noise_cache)
    clip_start = train.source.offsets.numpy()
    for row, span, where in ((2, 4, "first"), (0, 601, "before")):
        rows = tf.constant(np.full(6000, row, np.int64))
        plans = [train._plan(rows, tf.constant(s, tf.int64), tf.constant(0.0)) for s in range(3)]
        # A long clip's window starts inside it (nothing before); a short one sits `before` zeros in.
        offsets = np.concatenate([p[where].numpy() for p in plans]) - (clip_start[row] if where == "first" else 0)
        counts = np.bincount(offsets, minlength=span)
        assert len(counts) == span
        assert stats.chisquare(counts).pvalue > 1e-3


def _mixed_weights(spec: MixupSpec, prob: float, batches: int = 400, n: int = 16) -> np.ndarray:
    return np.stack([draw_mixup(tf.constant(n), tf.constant(s, tf.int64), tf.constant(prob), spec)[1].numpy()
                     for s in range(batches)])


def _numpy_weights(config: PipelineConfig, prob: float, batches: int = 400, n: int = 16) -> np.ndarray:
    """Each example's own weight in numpy mixup, read off labels that name their example."""
    rng = np.random.default_rng(0)
    eye = np.eye(n, dtype=np.float32)
    out = [mixup_batch({}, eye, rng, prob, config.mixup_mode, config.mixup_lambda, config.mixup_alpha,
                       config.mixup_label_rule)[1].diagonal() for _ in range(batches)]
    return np.stack(out)


@pytest.mark.parametrize("mode", ["fixed", "beta"])
def test_mixup_draws_match_the_numpy_pipeline(mode) -> None:
    config = PipelineConfig(mixup_mode=mode, mixup_lambda=0.7, mixup_alpha=0.4)
    graph, numpy = _mixed_weights(MixupSpec.from_config(config), 0.6), _numpy_weights(config, 0.6)
    # Mixed share: probability 0.6 times 15/16 (a fixed point of the permutation stays unmixed).
    for weights in (graph, numpy):
        assert abs(np.mean(weights < 1.0) - 0.6 * 15 / 16) < 0.02
    if mode == "fixed":
        assert set(np.unique(graph)) == {np.float32(0.7), np.float32(1.0)}
    else:
        assert stats.ks_2samp(graph[graph < 1], numpy[numpy < 1]).pvalue > 1e-3
        assert stats.kstest(graph[graph < 1], stats.beta(0.4, 0.4).cdf).pvalue > 1e-3


def test_batch_scope_uniform_weights_and_kept_side_inputs(dc_cache) -> None:
    spec = MixupSpec(mode="uniform", uniform_range=(0.2, 0.5), scope="batch")
    weights = _mixed_weights(spec, 0.3, batches=600)
    mixed_batches = (weights < 1).any(axis=1)
    assert abs(mixed_batches.mean() - 0.3) < 0.05  # whole batches are mixed, with probability p
    for row in weights[mixed_batches]:
        assert len(set(row[row < 1])) == 1  # one weight for the batch
    drawn = weights[mixed_batches].min(axis=1)
    assert stats.kstest(drawn, stats.uniform(0.2, 0.3).cdf).pvalue > 1e-3
    assert not (weights[~mixed_batches] < 1).any()

    train = _train(dc_cache, mixup_prob=1.0, config={"batch_size": 8})
    train.spec = replace(spec, side_inputs="keep", label_rule="or")
    for x, y in _epoch(train.dataset()):
        own = x["global_features"][:, 0, 0]  # each clip's own mean
        np.testing.assert_allclose(x["length"][:, 0], dc_cache.length_feature[np.round(own * 100).astype(int) - 1])
        mixed = y.sum(axis=1) == 2  # OR rule: both labels kept
        assert mixed.any()
        np.testing.assert_array_equal(y[~mixed].sum(axis=1), 1)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("label_rule", ["blend", "or"])
def test_mixed_crops_labels_and_side_inputs_carry_the_same_weight(dc_cache, source, label_rule) -> None:
    train = _train(dc_cache, source, mixup_prob=1.0, config={"batch_size": 8, "mixup_label_rule": label_rule,
                                                              "mixup_mode": "beta"})
    values = 0.01 * np.arange(1, 33)
    n_mixed = 0
    for x, y in _epoch(train.dataset()):
        for wave, features, target in zip(x["waveform"], x["global_features"], y):
            mean = features[0, 0]  # blended like the audio
            clips = np.flatnonzero(target)
            if len(clips) == 1:
                np.testing.assert_allclose(mean, values[clips[0]], atol=1e-6)
                continue
            n_mixed += 1
            # the weight of clip a is read off the blended global-feature mean (v_a w + v_b (1 - w))
            a, b = clips
            w = (mean - values[b]) / (values[a] - values[b])
            expected_labels = [w, 1 - w] if label_rule == "blend" else [1.0, 1.0]
            np.testing.assert_allclose(target[clips], expected_labels, atol=1e-4)
            # every sample holds w v_a + (1 - w) v_b, or one part alone where the shorter clip is padded
            levels = np.array([w * values[a] + (1 - w) * values[b], w * values[a], (1 - w) * values[b], 0.0])
            gaps = np.abs(np.unique(wave)[:, None] - levels).min(axis=1)
            assert gaps.max() < 5e-5  # int16 quantisation of the cached clips
    assert n_mixed >= 20


@pytest.mark.parametrize("source", SOURCES)
def test_same_seed_same_batches_new_epoch_new_batches(noise_cache, source) -> None:
    a, b = _train(noise_cache, source, mixup_prob=0.5), _train(noise_cache, source, mixup_prob=0.5)
    ds_a = a.dataset()
    a1, a2, b1 = _epoch(ds_a), _epoch(ds_a), _epoch(b.dataset())
    for (xa, ya), (xb, yb) in zip(a1, b1):
        np.testing.assert_array_equal(xa["waveform"], xb["waveform"])
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a1[0][0]["waveform"], a2[0][0]["waveform"])
    other = _epoch(_train(noise_cache, source, mixup_prob=0.5, config={"seed": 8}).dataset())
    assert not np.array_equal(a1[0][0]["waveform"], other[0][0]["waveform"])


@pytest.mark.parametrize("source", SOURCES)
def test_worker_shards_partition_an_epoch_in_equal_steps(noise_cache, source) -> None:
    train = _train(noise_cache, source, config={"batch_size": 2})
    rows = lambda **shard: [sorted(np.argmax(y, axis=1)) for _, y in _epoch(train.dataset(**shard))]  # noqa: E731
    whole = rows()
    shards = [rows(shards=2, shard=k, replicas=4) for k in (0, 1)]
    assert len(whole) == 6 and [len(s) for s in shards] == [2, 2]  # 6 batches cut to 4 for 4 replicas
    seen = [r for s in shards for batch in s for r in batch]
    assert len(seen) == len(set(seen)) == 8  # disjoint
    assert sorted(shards[0] + shards[1]) == sorted(whole[:4])  # one worker's order, every other batch each
    crops = [_epoch(train.dataset(shards=2, shard=k))[0][0]["waveform"] for k in (0, 1)]
    assert not np.array_equal(crops[0], crops[1])


@pytest.mark.parametrize("source", SOURCES)
def test_set_active_and_mixup_prob_take_effect_between_epochs(dc_cache, source) -> None:
    train = _train(dc_cache, source, config={"batch_size": 8})
    dataset = train.dataset()
    clips = lambda: {int(c) for _, y in _epoch(dataset) for c in np.flatnonzero(y.max(axis=0))}  # noqa: E731
    assert clips() == set(range(32))
    train.set_active(np.array([3, 9, 10]))
    assert clips() == {3, 9, 10} and len(_epoch(dataset)) == 4  # the epoch keeps its length
    train.set_active(None)
    train.mixup_prob = 1.0
    assert train.mixup_prob == 1.0
    assert np.mean([(y.max(axis=1) < 1).mean() for _, y in _epoch(dataset)]) > 0.8
    with pytest.raises(ValueError, match="subset of indices"):
        _train(dc_cache, source, indices=np.arange(4, 32)).set_active(np.array([0, 5]))


@pytest.mark.parametrize("source", SOURCES)
def test_a_continuous_input_serves_whole_epochs_back_to_back_with_their_mixup(dc_cache, source) -> None:
    train = _train(dc_cache, source, config={"batch_size": 8}, mixup_prob=1.0)  # the plan overrides mixup_prob
    n = len(train)
    endless = train.dataset(epochs=EpochPlan(1, (1.0, 0.0, 1.0, 0.0)))
    batches = _take(endless, 5 * n)
    mixed = [np.mean([(y.max(axis=1) < 1).mean() for _, y in batches[e * n:(e + 1) * n]]) for e in range(5)]
    assert mixed[0] == mixed[2] == mixed[3] == mixed[4] == 0 and mixed[1] > 0.8  # plan epochs 1, 2, 3, 3, 3
    orders = []
    for e in (0, 2, 3):  # an unmixed epoch: every clip once, a new order each time
        rows = [int(c) for _, y in batches[e * n:(e + 1) * n] for c in np.argmax(y, axis=1)]
        assert sorted(rows) == list(range(32))
        orders.append(rows)
    assert orders[0] != orders[1] != orders[2]
    # Its first epoch is the one-epoch dataset's first epoch, batch for batch.
    first = _epoch(_train(dc_cache, source, config={"batch_size": 8}).dataset())
    for (x, y), (xe, ye) in zip(first, batches[:n]):
        np.testing.assert_array_equal(x["waveform"], xe["waveform"])
        np.testing.assert_array_equal(y, ye)
    with pytest.raises(ValueError, match="EpochPlan"):
        EpochPlan(0, ())


@pytest.mark.parametrize("source", SOURCES)
def test_continuous_worker_shards_partition_every_epoch(noise_cache, source) -> None:
    train = _train(noise_cache, source, config={"batch_size": 2})  # 12 clips: 6 batches, 3 per worker
    plan = EpochPlan(0, (0.0,))
    per_worker = [_take(train.dataset(shards=2, shard=k, replicas=2, epochs=plan), 9) for k in (0, 1)]
    for e in range(3):
        rows = [int(c) for batches in per_worker for _, y in batches[3 * e:3 * e + 3] for c in np.argmax(y, axis=1)]
        assert sorted(rows) == list(range(12)), e


def test_fit_stage_runs_the_graph_input_continuously_with_the_stage_mixup_schedule(dc_cache, tmp_path,
                                                                                   monkeypatch) -> None:
    """One dataset for the whole stage, its plan the stage's schedule (mixup until the first milestone),
    and the batches the model trained on mixed in exactly the scheduled epochs; F2 keeps one per epoch."""
    import keras

    from freesound_tf.training.stage import fit_stage

    train = _train(dc_cache, config={"batch_size": 8}, inputs=("waveform",))
    made, seen = [], []
    one_epoch_dataset = train.dataset

    def record(labels: np.ndarray) -> np.ndarray:
        seen.append(labels.copy())
        return labels

    def recorded(x, y):
        return x, tf.ensure_shape(tf.numpy_function(record, [y], tf.float32), y.shape)

    def spied_dataset(**kw):
        made.append(kw.get("epochs"))
        return one_epoch_dataset(**kw).map(recorded)

    monkeypatch.setattr(train, "dataset", spied_dataset)
    stage = StageConfig(epochs=4, lr=0.01, lr_milestones=(2,), mixup_prob=1.0, mixup_until_first_milestone=True)

    def make_model():
        wave = keras.Input((SR,), name="waveform")
        return keras.Model({"waveform": wave}, keras.layers.Dense(32, activation="sigmoid")(wave))

    def compile_model(model, lr):
        model.compile(optimizer=keras.optimizers.SGD(lr), loss="binary_crossentropy")

    fit_stage(make_model, compile_model, stage, tmp_path / "stage", train, lambda model: np.full((4, 32), 0.5),
              np.eye(32)[:4], tmp_path / "tb", verbose=0)
    assert made == [EpochPlan(0, (1.0, 1.0, 0.0, 0.0))]
    n = len(train)
    mixed = [np.mean([(y.max(axis=1) < 1).mean() for y in seen[e * n:(e + 1) * n]]) for e in range(4)]
    assert mixed[0] > 0.8 and mixed[1] > 0.8 and mixed[2] == mixed[3] == 0
    f2 = replace(stage, epochs=2, f2_below=0.5)
    fit_stage(make_model, compile_model, f2, tmp_path / "f2", train, lambda model: np.full((4, 32), 0.5),
              np.eye(32)[:4], tmp_path / "tb", verbose=0, predict_train=lambda model, rows: train.labels[rows])
    assert made[1:] == [None]  # one one-epoch dataset, iterated once per epoch


def test_random_lengths_and_fixed_size_epochs(noise_cache) -> None:
    train = _train(noise_cache, config={"random_length_percentiles": (25.0, 75.0)}, steps_per_epoch=7)
    low, high = train.length_range
    assert len(train) == 7
    widths = [x["waveform"].shape[1] for x, _ in _epoch(train.dataset())]
    assert len(widths) == 7 and all(low <= w <= high for w in widths) and len(set(widths)) > 3


def test_graph_has_no_python_ops_and_the_numpy_pipeline_has(noise_cache) -> None:
    config = PipelineConfig(crop_seconds=1.0, batch_size=4)
    labels = np.eye(len(noise_cache), dtype=np.float32)
    assert python_ops(_train(noise_cache, mixup_prob=0.5).dataset()) == set()
    assert python_ops(_train(noise_cache, "records", mixup_prob=0.5).dataset()) == set()
    for source in SOURCES:  # continuous, as training runs them
        assert python_ops(_train(noise_cache, source).dataset(epochs=EpochPlan(0, (0.5,)))) == set()
    assert "PyFunc" in python_ops(TrainInput(noise_cache, labels, config, SR).dataset())


def test_loader_choice(noise_cache) -> None:
    labels = np.eye(len(noise_cache), dtype=np.float32)
    effects = AugmentConfig(p_effects=0.5)
    make = lambda loader, augment=None: make_train_input(  # noqa: E731
        noise_cache, labels, PipelineConfig(crop_seconds=1.0, batch_size=4, loader=loader), SR, augment=augment)
    assert type(make("auto")) is GraphTrainInput
    assert type(make("auto", effects)) is TrainInput
    assert type(make("python")) is TrainInput
    with pytest.raises(ConfigError, match="p_effects"):
        make("graph", effects)
    with pytest.raises(ConfigError, match="pipeline.loader"):
        PipelineConfig(loader="fast")


def test_tfrecords_are_written_once_per_version_of_the_cache(noise_cache, tmp_path, monkeypatch) -> None:
    shards = tfrecords.write_records(noise_cache.path)
    assert tfrecords.write_records(noise_cache.path) == shards  # reused
    copy = tmp_path / noise_cache.path.name
    copy.write_bytes(noise_cache.path.read_bytes())
    first = tfrecords.write_records(copy, shard_bytes=4000)
    assert len(first.files) > 2
    records = list(tf.data.TFRecordDataset(list(first.files)))
    rows = sorted(int(tfrecords.parse_rows(r)) for r in records)
    assert rows == list(range(len(noise_cache)))
    row = int(tfrecords.parse_rows(records[0]))
    samples = WaveformCache(copy)._read_pcm(row)
    assert int(tfrecords.clip_length(records[0], STEPS)) == len(samples)
    np.testing.assert_array_equal(tfrecords.parse_samples(records[0], STEPS).numpy(), samples)
    np.testing.assert_array_equal(tfrecords.parse_samples(records[0], STEPS, 3, 5).numpy(), samples[3:8])
    np.testing.assert_array_equal(tfrecords.parse_features(records[0], STEPS).numpy(),
                                  noise_cache.read_global_features([row])[0])
    monkeypatch.setattr(tfrecords, "FORMAT", "another layout")  # shards of an older layout are rewritten
    assert tfrecords.write_records(copy).folder != first.folder and not first.folder.exists()
    monkeypatch.undo()
    first = tfrecords.write_records(copy)
    copy.write_bytes(copy.read_bytes() + b"\0")  # the cache changed: new shards, the old ones go
    second = tfrecords.write_records(copy)
    assert second.folder != first.folder and not first.folder.exists()
    assert tfrecords.find_records(copy) == second and [p.name for p in copy.parent.glob("*.tfrecords/.tmp-*")] == []


def test_prepare_writes_the_shards_and_fit_streams_them_under_a_mirrored_strategy(tmp_path) -> None:
    """A cache over the memory budget: `prepare` writes its shards (training splits only), and a
    MirroredStrategy fit of a small model reads the records source through Distribution.dataset."""
    import keras

    from freesound_tf.data.demo import make_demo_dataset
    from freesound_tf.data.prepare import prepare_data
    from freesound_tf.training.distribute import make_distribution

    demo = make_demo_dataset(tmp_path / "demo", seed=1, sample_rate=8000, n_curated=16, n_noisy=8, n_test=4)
    pipeline = PipelineConfig(crop_seconds=0.5, batch_size=4, graph_memory_fraction=0.0)
    data = prepare_data(demo, AudioConfig(sample_rate=8000), tmp_path / "work", workers=1, progress=False,
                        pipeline=pipeline)
    assert {name for name, split in data.splits.items() if tfrecords.find_records(split.cache_path)} == {
        "curated", "noisy"}
    split = data.splits["curated"]
    with split.open() as cache:
        train = make_train_input(cache, split.labels(cache), pipeline, 8000, inputs=("waveform", "length"),
                                 mixup_prob=0.5)
        assert isinstance(train.source.shards, tfrecords.RecordShards)
        distribution = make_distribution("mirrored")
        with distribution.scope():
            wave, length = keras.Input((4000,), name="waveform"), keras.Input((1,), name="length")
            frames = keras.layers.GlobalAveragePooling1D()(keras.layers.Reshape((40, 100))(wave))
            pooled = keras.layers.Concatenate()([frames, length])
            model = keras.Model({"waveform": wave, "length": length},
                                keras.layers.Dense(10, activation="sigmoid")(pooled))
            model.compile(optimizer="adam", loss="binary_crossentropy")
            history = model.fit(distribution.dataset(train), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
