"""Seed 002's variable-length training batches: one random length per batch between percentiles of the
training clips' lengths, every clip of a batch cropped or padded to it, labels and mixup intact."""
import numpy as np

from freesound_tf.config import PipelineConfig
from freesound_tf.data.pipeline import TrainInput
from tests.data.test_pipeline import SR, MemoryCache

LENGTHS = [40, 90, 150, 220, 300, 380, 450, 520, 600, 650, 700, 760, 820, 900, 980, 999]  # < 1000: see MemoryCache
TRAIN = np.arange(14)  # the two longest clips are not training clips: they must not move the range


def _one_hot(n: int) -> np.ndarray:
    """Labels that name their clip, so mixed rows tell which two clips they hold."""
    return np.eye(n, dtype=np.float32)


def _batches(train: TrainInput, epochs: int = 1):
    ds = train.dataset()
    return [(x["waveform"].numpy(), x["global_features"].numpy(), y.numpy()) for _ in range(epochs) for x, y in ds]


def _config(**kw) -> PipelineConfig:
    return PipelineConfig(**{"crop_seconds": 3.0, "batch_size": 4, "seed": 3,
                             "random_length_percentiles": (25.0, 75.0), **kw})


def test_batch_lengths_lie_between_the_training_percentiles_and_vary() -> None:
    cache = MemoryCache(LENGTHS)
    train = TrainInput(cache, _one_hot(len(LENGTHS)), _config(), SR, indices=TRAIN)
    low, high = np.percentile(np.array(LENGTHS)[TRAIN], [25, 75])
    assert train.length_range == (round(low), round(high)) == (240, 688)
    assert train.dataset().element_spec[0]["waveform"].shape.as_list() == [None, None]
    widths = []
    for wave, gf, y in _batches(train, epochs=4):
        widths.append(wave.shape[1])
        assert low <= wave.shape[1] <= high
        for row, features, target in zip(wave, gf, y):
            clip = int(features[0, 0])
            np.testing.assert_array_equal(target, _one_hot(len(LENGTHS))[clip])  # no mixup: own label
            samples = row[row >= 1000 * clip] if clip else row[row > 0]  # clip 0's first sample is 0.0
            assert np.all(samples // 1000 == clip) and np.all(np.diff(samples) == 1)  # one window of this clip
            assert len(samples) == min(len(row), LENGTHS[clip]) - (clip == 0)  # cropped, or whole and padded
    assert len(widths) == 4 * len(train) == 12
    assert len(set(widths)) >= 6  # a new length per batch


def test_mixup_blends_clips_of_the_same_batch_length_with_matching_labels() -> None:
    cache = MemoryCache(LENGTHS)
    cfg = _config(mixup_mode="fixed", mixup_lambda=0.7)
    train = TrainInput(cache, _one_hot(len(LENGTHS)), cfg, SR, indices=TRAIN, mixup_prob=1.0)
    mixed = 0
    for wave, gf, y in _batches(train, epochs=2):
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
        for features, target in zip(gf, y):
            clips = np.flatnonzero(target)
            weights = target[clips]
            # The clip-index side input went through the same blend as the audio and the labels.
            np.testing.assert_allclose(features[0, 0], (clips * weights).sum(), rtol=1e-5)
            mixed += len(clips) == 2
            if len(clips) == 2:
                np.testing.assert_allclose(sorted(weights), [0.3, 0.7], rtol=1e-5)
    assert mixed >= 12  # most of the 24 rows drew another clip of their batch


def test_without_percentiles_every_batch_is_crop_seconds_long() -> None:
    train = TrainInput(MemoryCache(LENGTHS), _one_hot(len(LENGTHS)), _config(random_length_percentiles=()), SR,
                       indices=TRAIN)
    assert train.length_range is None
    assert {wave.shape[1] for wave, _, _ in _batches(train)} == {300}
