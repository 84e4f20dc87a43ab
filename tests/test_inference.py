import numpy as np

from freesound_tf.config import FrontendConfig, ModelConfig
from freesound_tf.inference import predict_crops, predict_full_length
from freesound_tf.models import build_cnn9

SR = 8000


class ClipCache:
    """In-memory clips with the cache's reading interface."""

    def __init__(self, clips):
        self.clips = clips
        self.lengths = np.array([len(c) for c in clips])
        self.length_feature = (self.lengths / (10 * SR)).astype(np.float32)
        self.steps = 4

    def read(self, i, start=0, stop=None):
        return self.clips[i][start:stop]

    def read_global_features(self, indices):
        return np.zeros((len(indices), self.steps, 12), np.float32)


def _model():
    config = ModelConfig(stem_width=4, block_widths=(4, 8, 8), use_global_features=False)
    return build_cnn9(config, FrontendConfig(n_fft=256, hop_length=128, n_mels=32), 5, SR, input_seconds=None)


def test_full_length_scores_each_whole_clip_in_the_callers_order():
    rng = np.random.default_rng(0)
    clips = [0.3 * rng.normal(size=n).astype(np.float32) for n in (9000, 20000, 8500, 31000)]
    cache, model = ClipCache(clips), _model()
    indices = np.array([3, 0, 2, 1])
    got = predict_full_length(model, cache, indices, SR, batch_size=1, inputs=("waveform", "length"))
    for row, i in zip(got, indices):
        expected = model({"waveform": clips[i][None], "length": cache.length_feature[i].reshape(1, 1)})
        np.testing.assert_allclose(row, np.asarray(expected)[0], atol=1e-5)
    batched = predict_full_length(model, cache, indices, SR, batch_size=2, inputs=("waveform", "length"))
    assert batched.shape == got.shape  # similar lengths share a batch; order still follows indices


def test_crop_tta_averages_start_middle_end():
    rng = np.random.default_rng(1)
    clip = 0.3 * rng.normal(size=30000).astype(np.float32)
    cache, model = ClipCache([clip]), _model()
    got = predict_crops(model, cache, np.array([0]), 1.0, SR, batch_size=4, n_crops=3, inputs=("waveform", "length"))
    crops = np.stack([clip[:8000], clip[11000:19000], clip[22000:]])
    length = np.full((3, 1), cache.length_feature[0], np.float32)
    expected = np.asarray(model({"waveform": crops, "length": length})).mean(axis=0)
    np.testing.assert_allclose(got[0], expected, atol=1e-5)
