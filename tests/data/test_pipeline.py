"""tf.data pipeline over an in-memory stand-in for the waveform cache (same reading interface)."""
import numpy as np
import pytest

from freesound_tf.config import PipelineConfig
from freesound_tf.data.pipeline import (
    TrainInput, average_crops, crop_clip, crop_positions, eval_dataset, full_length_dataset,
    length_buckets, restore_order,
)

SR = 100


class MemoryCache:
    """Clips whose sample k of clip i equals i * 1000 + k: every crop tells where it came from."""

    def __init__(self, lengths, steps=4):
        self.lengths = np.asarray(lengths, np.int64)
        self.length_feature = (self.lengths / (10 * SR)).astype(np.float32)
        self.steps = steps
        self.reads = []

    def read(self, i, start=0, stop=None):
        stop = self.lengths[i] if stop is None else stop
        assert 0 <= start <= stop <= self.lengths[i], (i, start, stop)
        self.reads.append((i, start, stop))
        return (i * 1000 + np.arange(start, stop)).astype(np.float32)

    def read_global_features(self, indices):
        indices = np.asarray(indices)
        return np.broadcast_to(indices[:, None, None].astype(np.float32), (len(indices), self.steps, 12)).copy()


def _labels(n, classes=3):
    y = np.zeros((n, classes), np.float32)
    y[np.arange(n), np.arange(n) % classes] = 1
    return y


def test_crop_clip_positions_and_padding():
    cache = MemoryCache([500, 120])
    np.testing.assert_array_equal(crop_clip(cache, 0, 200, 0.0), np.arange(0, 200))
    np.testing.assert_array_equal(crop_clip(cache, 0, 200, 1.0), np.arange(300, 500))
    np.testing.assert_array_equal(crop_clip(cache, 0, 200, 0.5), np.arange(150, 350))
    short = crop_clip(cache, 1, 200, 1.0)  # 120 samples right-aligned in 200
    np.testing.assert_array_equal(short[:80], 0)
    np.testing.assert_array_equal(short[80:], 1000 + np.arange(120))
    assert crop_clip(cache, 1, 200, 0.0)[119] == 1119 and crop_clip(cache, 1, 200, 0.0)[120] == 0


def test_random_offsets_cover_the_whole_clip_uniformly():
    cache = MemoryCache([110])
    starts = [int(crop_clip(cache, 0, 100, p)[0]) for p in np.random.default_rng(0).random(5000)]
    counts = np.bincount(starts, minlength=11)
    assert counts.min() > 350 and counts.max() < 560  # 11 offsets, ~455 each


def _epoch(source):
    ds = source.dataset() if isinstance(source, TrainInput) else source
    return [(dict((k, v.numpy()) for k, v in x.items()), y.numpy()) for x, y in ds]


def test_train_batches_shapes_labels_and_side_inputs_match_their_clip():
    lengths = [50, 700, 300, 1000, 250, 900, 420]
    cache = MemoryCache(lengths)
    labels = _labels(len(lengths))
    train = TrainInput(cache, labels, PipelineConfig(crop_seconds=3.0, batch_size=2, seed=5), SR)
    batches = _epoch(train)
    assert len(batches) == len(train) == 3  # 7 clips: 3 full batches, the 7th clip waits for a later epoch
    seen = []
    for x, y in batches:
        assert x["waveform"].shape[1] == 300 and x["global_features"].shape[1:] == (4, 12)
        for wave, gf, length, target in zip(x["waveform"], x["global_features"], x["length"], y):
            clip = int(gf[0, 0])
            seen.append(clip)
            nonzero = wave[wave != 0] if clip == 0 else wave[wave >= 1000 * clip]
            assert np.all(nonzero // 1000 == clip)  # samples come from this clip only
            assert np.all(np.diff(nonzero) == 1)  # one contiguous window
            assert len(nonzero) == min(300, lengths[clip]) - (clip == 0)  # sample 0 of clip 0 is 0.0
            np.testing.assert_array_equal(target, labels[clip])
            assert length[0] == pytest.approx(lengths[clip] / 1000)
    assert len(set(seen)) == len(seen) == 6  # no clip twice in an epoch


def test_train_pipeline_is_deterministic_per_seed_and_reshuffles_each_epoch():
    cache = MemoryCache(np.arange(20) * 37 + 400)
    cfg = PipelineConfig(crop_seconds=2.0, batch_size=4, seed=11)
    labels = _labels(20)
    run_a, run_b = TrainInput(cache, labels, cfg, SR), TrainInput(cache, labels, cfg, SR)
    ds_a = run_a.dataset()  # Keras iterates one dataset object once per epoch
    a1, a2 = _epoch(ds_a), _epoch(ds_a)
    b1 = _epoch(run_b)
    assert not np.array_equal(a1[0][0]["waveform"], a2[0][0]["waveform"])
    for (xa, ya), (xb, yb) in zip(a1, b1):
        np.testing.assert_array_equal(xa["waveform"], xb["waveform"])
        np.testing.assert_array_equal(ya, yb)
    order = lambda epoch: np.concatenate([x["global_features"][:, 0, 0] for x, _ in epoch])
    assert not np.array_equal(order(a1), order(a2))
    other = _epoch(TrainInput(cache, labels, PipelineConfig(crop_seconds=2.0, batch_size=4, seed=12), SR))
    assert not np.array_equal(order(a1), order(other))


def test_train_subset_and_input_selection():
    cache = MemoryCache([400] * 10)
    train = TrainInput(cache, _labels(10), PipelineConfig(crop_seconds=1.0, batch_size=4), SR,
                       indices=np.array([1, 3, 8]), inputs=("waveform",))  # fewer clips than a batch: one batch
    (x, y), = _epoch(train)
    assert set(x) == {"waveform"}
    assert sorted((x["waveform"][:, -1] // 1000).astype(int)) == [1, 3, 8]


def test_mixup_applies_in_pipeline_and_can_be_switched_off():
    cache = MemoryCache([400] * 32)
    y = _labels(32, classes=32)  # distinct labels: a mixed example can't keep a 1.0
    train = TrainInput(cache, y, PipelineConfig(crop_seconds=1.0, batch_size=32), SR, mixup_prob=1.0)
    (_, mixed), = _epoch(train)
    assert np.mean(mixed.max(axis=1) < 1.0) > 0.8
    train.mixup_prob = 0.0
    (_, clean), = _epoch(train)
    assert set(np.unique(clean)) == {0.0, 1.0}


def test_eval_crops_start_middle_end_and_average():
    lengths = [1000, 150]
    cache = MemoryCache(lengths)
    ds = eval_dataset(cache, np.array([0, 1]), 2.0, SR, batch_size=4, n_crops=3, labels=_labels(2))
    (x, y), (x2, y2) = [(a, b) for a, b in ds]
    waves = np.concatenate([x["waveform"], x2["waveform"]])
    np.testing.assert_array_equal(waves[0], np.arange(0, 200))
    np.testing.assert_array_equal(waves[1], np.arange(400, 600))
    np.testing.assert_array_equal(waves[2], np.arange(800, 1000))
    np.testing.assert_array_equal(waves[3][:150], 1000 + np.arange(150))  # short clip left-aligned
    np.testing.assert_array_equal(waves[5][-150:], 1000 + np.arange(150))  # ... and right-aligned
    assert y.shape == (4, 3) and y2.shape == (2, 3)
    preds = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.testing.assert_allclose(average_crops(preds, 3), [[2, 3], [8, 9]])
    np.testing.assert_allclose(crop_positions(1), [0.5])


def test_length_buckets_respect_limits_and_cover_all():
    lengths = np.array([5, 100, 7, 60, 61, 3, 99, 58])
    batches = length_buckets(lengths, batch_size=3, max_batch_samples=150)
    flat = np.concatenate(batches)
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3 and len(b) * lengths[b].max() <= 150 or len(b) == 1
    maxes = [lengths[b].max() for b in batches]
    assert maxes == sorted(maxes)


def test_full_length_dataset_pads_little_and_restores_order():
    lengths = [430, 120, 990, 125, 440, 980]
    cache = MemoryCache(lengths)
    indices = np.array([5, 0, 1, 2, 3, 4])
    ds, order = full_length_dataset(cache, indices, SR, batch_size=2, min_seconds=1.0)
    widths, preds = [], []
    for x in ds:
        wave = x["waveform"].numpy()
        widths.append(wave.shape[1])
        preds.append(x["global_features"].numpy()[:, 0, :1])  # "prediction" = clip id
    assert widths == [125, 440, 990]  # pairs of similar length, each padded to its longest clip
    restored = restore_order(np.concatenate(preds), order, indices)
    np.testing.assert_array_equal(restored[:, 0], indices)
