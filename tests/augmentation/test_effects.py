"""Seed 000's audio effects: each changes the signal the way its name says, measured independently."""
import numpy as np
import pytest

from freesound_tf.augmentation import EffectChain, EffectDraw
from freesound_tf.augmentation.effects import fit_length, pitch_tempo
from freesound_tf.config import AugmentConfig, ConfigError, Recipe, from_dict

SR = 16000
T = np.arange(SR) / SR  # 1 s


def _sine(freq, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * T)).astype(np.float32)


def _peak_hz(x, lo=100.0, hi=2000.0):
    """Power-weighted mean frequency between lo and hi: a tone's pitch, robust to a smeared peak."""
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    hz = np.fft.rfftfreq(len(x), 1 / SR)
    band = (hz >= lo) & (hz <= hi)
    return float((power[band] * hz[band]).sum() / power[band].sum())


def _band(x, hz, width=20):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(round(hz * len(x) / SR))
    return spectrum[k - width:k + width].max()


def _chain(**overrides):
    return EffectChain(AugmentConfig(p_effects=1.0, **overrides), SR)


@pytest.mark.parametrize("semitones", [-4.0, 3.0])
def test_pitch_shift_moves_a_sine_by_the_semitone_ratio_and_keeps_the_length(semitones):
    out = _chain().apply(_sine(500), EffectDraw(semitones=semitones))
    assert out.shape == (SR,)
    assert _peak_hz(out) == pytest.approx(500 * 2 ** (semitones / 12), rel=0.01)


def _burst_period_s(x):
    """Period of the bursts' envelope: the first autocorrelation peak past 50 ms."""
    env = np.convolve(np.abs(x), np.ones(160) / 160, mode="same")
    env = env - env.mean()
    ac = np.fft.irfft(np.abs(np.fft.rfft(env, 2 * len(env))) ** 2)[:len(env)]  # autocorrelation
    lo = int(0.05 * SR)
    return (lo + int(np.argmax(ac[lo:int(0.6 * SR)]))) / SR


@pytest.mark.parametrize("tempo", [0.8, 1.25])
def test_tempo_changes_the_duration_of_a_burst_pattern_not_its_pitch(tempo):
    bursts = (_sine(1000) * ((T % 0.2) < 0.05)).astype(np.float32)  # 50 ms of tone every 200 ms
    assert _burst_period_s(bursts) == pytest.approx(0.2, rel=0.02)
    stretched = pitch_tempo(bursts, SR, 0.0, tempo)  # before crop / pad back
    assert abs(len(stretched) - SR / tempo) <= 2
    assert _burst_period_s(stretched) == pytest.approx(0.2 / tempo, rel=0.05)
    assert _peak_hz(stretched) == pytest.approx(1000, rel=0.01)
    out = _chain().apply(bursts, EffectDraw(tempo=tempo, position=0.0))
    assert out.shape == (SR,)
    if tempo > 1:  # faster: the window ends in zero padding
        assert np.all(out[int(SR / tempo) + 1:] == 0) and np.abs(out[:int(SR / tempo)]).max() > 0.4


def test_fit_length_crops_and_pads_at_the_position():
    x = np.arange(1, 11, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(x, 4, 0.0), [1, 2, 3, 4])
    np.testing.assert_array_equal(fit_length(x, 4, 1.0), [7, 8, 9, 10])
    np.testing.assert_array_equal(fit_length(x[:2], 4, 1.0), [0, 0, 1, 2])


def test_overdrive_clips_the_waveform_into_odd_harmonics_at_the_same_peak():
    x = _sine(500)
    out = _chain().apply(x, EffectDraw(drive_db=15.0))
    assert np.abs(out).max() == pytest.approx(0.5, rel=1e-4)
    assert _band(x, 1500) / _band(x, 500) < 1e-3
    assert _band(out, 1500) / _band(out, 500) > 0.1  # tanh is odd: third harmonic
    crest = lambda s: np.abs(s).max() / np.sqrt(np.mean(s ** 2))
    assert crest(out) < 0.8 * crest(x)  # flattened tops: closer to a square wave


def test_reverb_lengthens_a_clicks_decay():
    click = np.zeros(SR, np.float32)
    click[1600:1616] = 0.8
    out = _chain().apply(click, EffectDraw(room_size=0.8, wet_level=0.5))
    energy = lambda s, a, b: float(np.sum(s[int(a * SR):int(b * SR)] ** 2))
    assert energy(click, 0.11, 1.0) == 0
    early, late = energy(out, 0.11, 0.3), energy(out, 0.5, 0.7)
    assert early > 1e-3 * energy(click, 0.1, 0.11) and 0 < late < early  # a decaying tail
    assert np.abs(out).max() == pytest.approx(0.8, rel=1e-4)


def test_probability_zero_and_neutral_draws_are_the_identity():
    x = _sine(300) + np.random.default_rng(0).normal(0, 0.05, SR).astype(np.float32)
    chain = _chain()
    assert chain(x, np.random.default_rng(1), prob=0.0) is x
    np.testing.assert_array_equal(chain.apply(x, EffectDraw()), x)
    waves = np.stack([x, 0.5 * x])
    np.testing.assert_array_equal(chain.batch(waves, np.random.default_rng(2), 0.0), waves)
    off = _chain(p_pitch=0.0, p_tempo=0.0, p_reverb=0.0, p_overdrive=0.0)
    np.testing.assert_array_equal(off.batch(waves, np.random.default_rng(2), 1.0), waves)


def test_same_seed_same_output_different_seed_different_output_bounded_and_finite():
    rng = np.random.default_rng(0)
    waves = np.stack([_sine(f, a) + rng.normal(0, 0.02, SR).astype(np.float32)
                      for f, a in zip(rng.uniform(200, 2000, 6), rng.uniform(0.1, 0.9, 6))])
    waves[-1] = 0  # silence stays silence
    chain = _chain(p_pitch=0.8, p_tempo=0.8, p_reverb=0.8, p_overdrive=0.8)
    a = chain.batch(waves, np.random.default_rng(5), 1.0)  # thread pool
    chain.threads = False
    b = chain.batch(waves, np.random.default_rng(5), 1.0)
    c = chain.batch(waves, np.random.default_rng(6), 1.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, waves)
    assert a.shape == waves.shape and a.dtype == np.float32 and np.isfinite(a).all()
    peaks = np.abs(waves).max(axis=1)
    np.testing.assert_allclose(np.abs(a).max(axis=1), peaks, rtol=1e-4)
    assert np.all(a[-1] == 0)


def test_draws_follow_the_probabilities_and_ranges():
    chain = _chain(p_pitch=0.3, pitch_semitones=(1.0, 2.0), p_tempo=1.0, tempo_range=(0.9, 1.1),
                   p_reverb=0.0, p_overdrive=0.6, overdrive_gain_db=(6.0, 7.0))
    rng = np.random.default_rng(0)
    draws = [chain.draw(rng) for _ in range(2000)]
    pitched = [d.semitones for d in draws if d.semitones != 0]
    assert len(pitched) / 2000 == pytest.approx(0.3, abs=0.04) and 1.0 <= min(pitched) <= max(pitched) <= 2.0
    assert all(0.9 <= d.tempo <= 1.1 for d in draws) and sum(d.tempo > 1 for d in draws) > 800
    assert all(d.wet_level == 0 for d in draws)
    driven = [d.drive_db for d in draws if d.drive_db > 0]
    assert len(driven) / 2000 == pytest.approx(0.6, abs=0.04) and 6.0 <= min(driven) <= max(driven) <= 7.0


def test_config_rejects_bad_ranges_by_key():
    with pytest.raises(ConfigError, match=r"augment\.tempo_range"):
        from_dict(Recipe, {"augment": {"tempo_range": [1.3, 1.2]}})
    with pytest.raises(ConfigError, match=r"augment\.p_reverb"):
        AugmentConfig(p_reverb=1.5)
    with pytest.raises(ConfigError, match=r"augment\.overdrive_gain_db"):
        AugmentConfig(overdrive_gain_db=(5.0,))
    assert from_dict(Recipe, {"augment": {"p_effects": 0.75, "pitch_semitones": [-2, 2]}}).augment.pitch_semitones == (-2.0, 2.0)
