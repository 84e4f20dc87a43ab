"""A cache never answers with what a file used to hold, and never passes off a partial file as whole."""
import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import soundfile as sf

from freesound_tf.config import AudioConfig
from freesound_tf.data import cache
from freesound_tf.data.cache import WaveformCache, build_cache

SR = 8000
AUDIO = AudioConfig(sample_rate=SR, global_steps=16)


@dataclass
class Table:
    name: str
    audio_dir: Path
    fnames: list[str]

    def paths(self) -> list[Path]:
        return [self.audio_dir / f for f in self.fnames]


def tone(freq: float, amplitude: float = 0.5, seconds: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(SR * seconds)) / SR)).astype(np.float32)


def decoded_now(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = cache._process_clip
    monkeypatch.setattr(cache, "_process_clip", lambda job: calls.append(job[0]) or real(job))
    return calls


def test_replaced_or_repaired_files_are_decoded_again(tmp_path, monkeypatch):
    audio = tmp_path / "audio"
    audio.mkdir()
    for name, freq in (("a.wav", 300), ("b.wav", 500), ("c.wav", 700)):
        sf.write(audio / name, tone(freq), SR, subtype="FLOAT")
    (audio / "d.wav").write_bytes(b"RIFF not yet audio")
    table = Table("test", audio, ["a.wav", "b.wav", "c.wav", "d.wav"])
    path = build_cache(table, AUDIO, tmp_path / "cache", workers=1, progress=False)
    assert dict(WaveformCache(path).skipped).keys() == {"d.wav"}

    sf.write(audio / "b.wav", tone(1500), SR, subtype="FLOAT")  # same length, other sound
    sf.write(audio / "d.wav", tone(900), SR, subtype="FLOAT")  # the unreadable file was fixed
    calls = decoded_now(monkeypatch)
    build_cache(table, AUDIO, tmp_path / "cache", workers=1, progress=False)
    assert sorted(calls) == ["b.wav", "d.wav"]  # only the changed files
    with WaveformCache(path) as fresh:
        assert fresh.fnames == table.fnames and fresh.skipped == []
        np.testing.assert_allclose(fresh.read(fresh.index_of("b.wav")), tone(1500), atol=1e-4)
        np.testing.assert_allclose(fresh.read(fresh.index_of("d.wav")), tone(900), atol=1e-4)
        np.testing.assert_allclose(fresh.read(fresh.index_of("a.wav")), tone(300), atol=1e-4)

    calls.clear()
    build_cache(table, AUDIO, tmp_path / "cache", workers=1, progress=False)
    assert calls == []  # unchanged files are reused


def test_a_cache_file_without_its_complete_mark_is_rebuilt(tmp_path, monkeypatch, caplog):
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "a.wav", tone(300), SR)
    table = Table("test", audio, ["a.wav"])
    path = build_cache(table, AUDIO, tmp_path / "cache", workers=1, progress=False)
    with h5py.File(path, "a") as f:
        del f.attrs["complete"]  # what a writer that died before its end would leave
    calls = decoded_now(monkeypatch)
    with caplog.at_level(logging.WARNING):
        build_cache(table, AUDIO, tmp_path / "cache", workers=1, progress=False)
    assert calls == ["a.wav"] and "incomplete file" in caplog.text
    assert len(WaveformCache(path)) == 1


def test_a_float_clip_below_int16_resolution_is_kept_and_named(tmp_path, caplog):
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "whisper.wav", tone(400, amplitude=1e-6), SR, subtype="FLOAT")
    sf.write(audio / "normal.wav", tone(400), SR, subtype="FLOAT")
    table = Table("test", audio, ["normal.wav", "whisper.wav"])
    with caplog.at_level(logging.WARNING):
        path = build_cache(table, AUDIO, tmp_path / "cache", workers=1, progress=False)
    assert "whisper.wav (peak 1.0e-06 is below the int16 cache's resolution" in caplog.text
    assert "normal.wav" not in caplog.text
    with WaveformCache(path) as wc:
        assert wc.fnames == table.fnames  # kept: it still gets a score
        assert not wc.read(1).any() and wc.read_global_features([1]).any()
