import logging
import os
import pickle
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import soundfile as sf

from freesound_tf.config import AudioConfig
from freesound_tf.data import cache
from freesound_tf.data.audio import load_audio, trim_silence
from freesound_tf.data.cache import WaveformCache, build_cache, cache_path, read_cache_report
from freesound_tf.data.features import global_features

SR = 16000
AUDIO = AudioConfig(sample_rate=SR, global_steps=16)
QUANT = 0.5 / 32767 + 1e-7  # int16 rounding error


@dataclass
class Table:
    """Stand-in for layout.SplitTable: what build_cache needs."""

    name: str
    audio_dir: Path
    fnames: list[str]

    def paths(self) -> list[Path]:
        return [self.audio_dir / f for f in self.fnames]


def write_clips(audio_dir: Path, n: int, start: int = 0) -> list[str]:
    """Noise bursts with 0.25 s of silence on both sides, 0.2-0.6 s long, varied formats."""
    audio_dir.mkdir(exist_ok=True)
    names = []
    for k in range(start, start + n):
        rng = np.random.default_rng(k)
        burst = rng.uniform(-0.6, 0.6, int(SR * (0.2 + 0.4 * rng.random()))).astype(np.float32)
        y = np.concatenate([np.zeros(SR // 4, np.float32), burst, np.zeros(SR // 4, np.float32)])
        name = f"clip{k:02d}.wav"
        if k % 3 == 1:  # stereo at another rate
            name = f"clip{k:02d}_st.wav"
            n22 = int(len(y) * 22050 / SR)
            y22 = np.interp(np.arange(n22) * SR / 22050, np.arange(len(y)), y).astype(np.float32)
            sf.write(audio_dir / name, np.stack([y22, 0.5 * y22], axis=1), 22050, subtype="PCM_24")
        elif k % 3 == 2:
            name = f"clip{k:02d}.flac"
            sf.write(audio_dir / name, y, SR)
        else:
            sf.write(audio_dir / name, y, SR, subtype="FLOAT")
        names.append(name)
    return names


def count_decodes(monkeypatch, fail_at: int | None = None) -> list[str]:
    """Wrap the worker function (workers=1 runs it in-process); optionally fail on call ``fail_at``."""
    calls: list[str] = []
    real = cache._process_clip

    def counting(job):
        calls.append(job[0])
        if fail_at is not None and len(calls) == fail_at:
            raise RuntimeError("injected failure")
        return real(job)

    monkeypatch.setattr(cache, "_process_clip", counting)
    return calls


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    table = Table("train", root / "audio", write_clips(root / "audio", 5))
    path = build_cache(table, AUDIO, root / "cache", workers=1, progress=False, shard_size=2)
    return table, path


def test_read_back_equals_decode_and_trim(built):
    table, path = built
    wc = WaveformCache(path)
    assert len(wc) == 5 and wc.fnames == table.fnames and wc.sample_rate == SR and wc.steps == 16
    for i, p in enumerate(table.paths()):
        y = load_audio(p, SR)
        trimmed, start, end = trim_silence(y, AUDIO.trim_top_db)
        assert 0 < start and end < len(y)  # the silence really was trimmed
        assert wc.lengths[i] == len(trimmed) and wc.untrimmed_lengths[i] == len(y)
        np.testing.assert_allclose(wc.read(i), trimmed, atol=QUANT)
        np.testing.assert_allclose(wc.read_global_features([i])[0], global_features(y, 16), atol=1e-6)
        assert wc.length_feature[i] == pytest.approx(len(trimmed) / (10.0 * SR))
    assert wc.skipped == [] and read_cache_report(path) == []


def test_partial_read_only_touches_the_slice(built):
    _, path = built
    wc = WaveformCache(path)
    full = wc.read(3)
    np.testing.assert_array_equal(wc.read(3, 100, 250), full[100:250])
    np.testing.assert_array_equal(wc.read(3, len(full) - 10, len(full) + 500), full[-10:])
    with pytest.raises(ValueError, match="start"):
        wc.read(3, 50, 10)

    requested = []

    class Spy:
        def __init__(self, dataset):
            self.dataset = dataset

        def __getitem__(self, key):
            requested.append(key)
            return self.dataset[key]

    with h5py.File(path, "r") as f:
        assert f["samples"].chunks is None and f["samples"].dtype == np.int16
        wc._file, wc._samples, wc._pid = f, Spy(f["samples"]), os.getpid()
        wc.read(3, 100, 250)
    offset = int(wc.offsets[3])
    assert requested == [slice(offset + 100, offset + 250)]


def test_feature_rows_any_order_and_pickle(built):
    _, path = built
    wc = WaveformCache(path)
    rows = wc.read_global_features([4, 0, 4])
    np.testing.assert_array_equal(rows[0], rows[2])
    np.testing.assert_array_equal(rows[1], wc.read_global_features(np.array([0]))[0])
    with pytest.raises(IndexError):
        wc.read_global_features([5])
    clone = pickle.loads(pickle.dumps(wc))
    np.testing.assert_array_equal(clone.read(2, 0, 50), wc.read(2, 0, 50))
    assert clone.index_of(wc.fnames[2]) == 2
    with pytest.raises(KeyError, match="nope.wav"):
        clone.index_of("nope.wav")
    wc.close()
    clone.close()


def test_unchanged_settings_reuse_without_decoding(built, monkeypatch, caplog):
    table, path = built
    mtime = path.stat().st_mtime_ns
    calls = count_decodes(monkeypatch)
    with caplog.at_level(logging.INFO, logger="freesound_tf.data.cache"):
        assert build_cache(table, AUDIO, path.parent, workers=1, progress=False) == path
    assert calls == [] and path.stat().st_mtime_ns == mtime
    assert "reusing" in caplog.text


def test_settings_change_builds_a_new_file(built, monkeypatch):
    table, path = built
    other = AudioConfig(sample_rate=SR, global_steps=16, trim_top_db=0.0)
    calls = count_decodes(monkeypatch)
    new_path = build_cache(table, other, path.parent, workers=1, progress=False)
    assert new_path != path and path.exists() and len(calls) == 5
    assert cache.cache_key(other) != cache.cache_key(AUDIO)
    wc = WaveformCache(new_path)
    np.testing.assert_array_equal(wc.lengths, wc.untrimmed_lengths)  # trimming disabled


def test_resume_after_failure_decodes_only_the_rest(tmp_path, monkeypatch):
    table = Table("train", tmp_path / "audio", write_clips(tmp_path / "audio", 6))
    calls = count_decodes(monkeypatch, fail_at=4)
    with pytest.raises(RuntimeError, match="injected"):
        build_cache(table, AUDIO, tmp_path / "cache", workers=1, progress=False, shard_size=2)
    path = cache_path(tmp_path / "cache", "train", AUDIO)
    assert not path.exists() and len(list(Path(f"{path}.parts").glob("*.h5"))) == 1

    calls = count_decodes(monkeypatch)
    build_cache(table, AUDIO, tmp_path / "cache", workers=1, progress=False, shard_size=2)
    assert calls == table.fnames[2:] and not Path(f"{path}.parts").exists()
    wc = WaveformCache(path)
    assert wc.fnames == table.fnames
    for i, p in enumerate(table.paths()):
        np.testing.assert_allclose(wc.read(i), trim_silence(load_audio(p, SR), 60.0)[0], atol=QUANT)


def test_resume_after_sigkill(tmp_path):
    table = Table("train", tmp_path / "audio", write_clips(tmp_path / "audio", 5))
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from freesound_tf.config import AudioConfig
        from freesound_tf.data import cache
        real, calls = cache._process_clip, []
        def dying(job):
            calls.append(job)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(job)
        cache._process_clip = dying
        class Table:
            name, fnames = "train", {table.fnames!r}
            def paths(self):
                return [Path({str(table.audio_dir)!r}) / f for f in self.fnames]
        cache.build_cache(Table(), AudioConfig(sample_rate={SR}, global_steps=16), {str(tmp_path / "cache")!r},
                          workers=1, progress=False, shard_size=3)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    path = cache_path(tmp_path / "cache", "train", AUDIO)
    assert not path.exists() and len(list(Path(f"{path}.parts").glob("*.h5"))) == 1


def test_new_rows_decode_only_new_clips(built, tmp_path, monkeypatch):
    table, path = built
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / path.name).write_bytes(path.read_bytes())
    grown = Table("train", table.audio_dir, table.fnames + write_clips(table.audio_dir, 2, start=5))
    calls = count_decodes(monkeypatch)
    new_path = build_cache(grown, AUDIO, cache_dir, workers=1, progress=False)
    assert calls == grown.fnames[5:]
    old, new = WaveformCache(path), WaveformCache(new_path)
    assert new.fnames == grown.fnames
    for i in range(5):
        np.testing.assert_array_equal(new.read(i), old.read(i))
        np.testing.assert_array_equal(new.read_global_features([i]), old.read_global_features([i]))


def test_bad_files_are_skipped_and_reported(tmp_path, caplog):
    audio_dir = tmp_path / "audio"
    good = write_clips(audio_dir, 2)
    (audio_dir / "garbage.wav").write_bytes(np.random.default_rng(1).integers(0, 256, 3000, np.uint8).tobytes())
    (audio_dir / "zero_bytes.wav").write_bytes(b"")
    (audio_dir / "notes.wav").write_text("not audio at all\n")
    sf.write(audio_dir / "no_frames.wav", np.zeros(0, np.float32), SR)
    sf.write(audio_dir / "silent.wav", np.zeros(4000, np.float32), SR)
    bad = ["garbage.wav", "zero_bytes.wav", "notes.wav", "no_frames.wav", "missing.wav"]
    table = Table("test", audio_dir, [good[0], *bad[:4], "silent.wav", bad[4], good[1]])
    with caplog.at_level(logging.INFO, logger="freesound_tf.data.cache"):
        path = build_cache(table, AUDIO, tmp_path / "cache", workers=1, progress=False, shard_size=3)
    reasons = dict(read_cache_report(path))
    assert list(reasons) == bad
    assert all(reasons[f].startswith("cannot decode") for f in bad[:3])
    assert reasons["no_frames.wav"] == "empty" and reasons["missing.wav"] == "file not found"
    wc = WaveformCache(path)
    assert wc.fnames == [good[0], "silent.wav", good[1]] and dict(wc.skipped) == reasons
    assert not wc.read(1).any()  # silence is kept whole, not trimmed to nothing
    warning = [r for r in caplog.records if r.levelno == logging.WARNING][0].getMessage()
    # The message names the clips (first few), why, and where the full report is.
    assert "5 clips" in warning and str(cache.report_path(path)) in warning
    assert "garbage.wav (cannot decode" in warning and "missing.wav (file not found)" in warning


def test_parallel_build_equals_serial(built, tmp_path, monkeypatch):
    table, path = built
    monkeypatch.setattr(cache, "_RUN_SAMPLES", 20000)  # the merge copies some clips alone, some in runs
    parallel = build_cache(table, AUDIO, tmp_path, workers=2, progress=False, shard_size=2)
    with h5py.File(path, "r") as a, h5py.File(parallel, "r") as b:
        for name in ("samples", "offsets", "lengths", "untrimmed_lengths", "global_features", "length_feature"):
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)
        assert list(a["fnames"].asstr()[()]) == list(b["fnames"].asstr()[()])


def test_duplicate_fnames_rejected(tmp_path):
    with pytest.raises(ValueError, match="duplicate fname 'a.wav' at row 2"):
        build_cache(Table("x", tmp_path, ["a.wav", "b.wav", "a.wav"]), AUDIO, tmp_path, workers=1)


def test_merge_runs_group_back_to_back_clips_up_to_the_cap():
    a, b = (SimpleNamespace(offsets=np.array([0, 10, 30, 35]), lengths=np.array([10, 20, 5, 50])) for _ in "ab")
    placements = [(a, 0), (a, 1), (a, 2), (b, 0), (a, 3), (b, 1), (b, 2), (b, 3)]
    runs = [(r.source is a, r.first, r.count, r.offset, r.samples) for r in cache._runs(placements, 40)]
    # a's clips 0-2 are consecutive (35 samples); b's 1-3 too, but 1-2 reach the cap and 3 alone exceeds it.
    assert runs == [(True, 0, 3, 0, 35), (False, 0, 1, 0, 10), (True, 3, 1, 35, 50), (False, 1, 2, 10, 25),
                    (False, 3, 1, 35, 50)]


def test_unguarded_script_fails_fast_instead_of_waiting_forever(tmp_path):
    """Worker processes import the main script again; a build at its top level must not deadlock on its own lock."""
    table = Table("train", tmp_path / "audio", write_clips(tmp_path / "audio", 4))
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from freesound_tf.config import AudioConfig
        from freesound_tf.data.cache import build_cache
        class Table:
            name, fnames = "train", {table.fnames!r}
            def paths(self):
                return [Path({str(table.audio_dir)!r}) / f for f in self.fnames]
        build_cache(Table(), AudioConfig(sample_rate={SR}, global_steps=16), {str(tmp_path / "cache")!r},
                    workers=2, progress=False, shard_size=1)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"{script}: builds the waveform cache at import time" in proc.stderr
    assert 'if __name__ == "__main__":' in proc.stderr
    assert "RuntimeError: split train: a cache worker process died" in proc.stderr  # the parent says so too
    assert not cache_path(tmp_path / "cache", "train", AUDIO).exists()
