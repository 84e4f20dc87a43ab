"""Audio effects inside TrainInput, and StageSchedule switching them off from effects_until_epoch."""
import keras
import numpy as np

from freesound_tf.config import AugmentConfig, PipelineConfig, StageConfig
from freesound_tf.data.pipeline import TrainInput
from freesound_tf.training.callbacks import StageSchedule

SR = 8000
ALWAYS = AugmentConfig(p_effects=1.0, p_pitch=1.0, p_tempo=1.0, p_reverb=1.0, p_overdrive=1.0)


class SineCache:
    """In-memory stand-in for the waveform cache: clip i is a 1.5 s sine at 200 * (i + 1) Hz."""

    def __init__(self, n, steps=2):
        self.lengths = np.full(n, int(1.5 * SR), np.int64)
        self.length_feature = np.full(n, 0.15, np.float32)
        self.steps = steps

    def read(self, i, start=0, stop=None):
        t = np.arange(start, self.lengths[i] if stop is None else stop) / SR
        return (0.5 * np.sin(2 * np.pi * 200 * (i + 1) * t)).astype(np.float32)

    def read_global_features(self, indices):
        return np.repeat(np.asarray(indices, np.float32)[:, None, None], self.steps, 1).repeat(12, 2)


def _train(augment=None, mixup_prob=0.0):
    labels = np.eye(8, dtype=np.float32)
    cfg = PipelineConfig(crop_seconds=1.0, batch_size=8, seed=3)
    return TrainInput(SineCache(8), labels, cfg, SR, mixup_prob=mixup_prob, augment=augment)


def _first_batch(train):
    x, y = next(iter(train.dataset()))
    return {k: v.numpy() for k, v in x.items()}, y.numpy()


def test_effects_change_only_the_waveforms_of_the_batches():
    (plain, y0), (fx, y1) = _first_batch(_train(mixup_prob=0.5)), _first_batch(_train(ALWAYS, mixup_prob=0.5))
    np.testing.assert_array_equal(y0, y1)  # same clips, same mixup partners
    np.testing.assert_array_equal(plain["global_features"], fx["global_features"])
    assert fx["waveform"].shape == plain["waveform"].shape and np.isfinite(fx["waveform"]).all()
    assert np.all(np.abs(fx["waveform"] - plain["waveform"]).max(axis=1) > 0.05)  # every clip changed
    assert np.abs(fx["waveform"]).max() <= np.abs(plain["waveform"]).max() + 1e-5


def test_stage_schedule_switches_effects_off_from_effects_until_epoch():
    train, plain = _train(ALWAYS), _train()
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    schedule = StageSchedule(StageConfig(epochs=4, effects_until_epoch=2), lambda prob: None, train.set_effects)
    schedule.set_model(model)
    rows, seed = np.arange(8), np.int64(7)
    changed = []
    for epoch in range(4):
        schedule.on_epoch_begin(epoch)
        changed.append(not np.array_equal(train._load(rows, seed)[0], plain._load(rows, seed)[0]))
    assert changed == [True, True, False, False]  # epochs 0, 1 augmented; from 2 on not
    assert train.effects_prob == 0.0
    never = StageSchedule(StageConfig(epochs=4), lambda prob: None, train.set_effects)
    never.set_model(model)
    never.on_epoch_begin(3)
    assert train.effects_prob == 1.0  # effects_until_epoch 0: never switched off
