"""Synthetic demo set: valid FAT2019 layout, label statistics, determinism, learnability."""
from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from freesound_tf.data.demo import DEMO_CLASSES, MANIFEST, _DemoParams, _plan, make_demo_dataset
from freesound_tf.data.layout import load_layout

SMALL = dict(n_curated=12, n_noisy=10, n_test=6)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    """One build at the default parameters, shared by the read-only tests below."""
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), seed=0)


@pytest.fixture(scope="module")
def layout(demo_root):
    return load_layout(demo_root)


def csv_labels(path: Path) -> list[set[str]]:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    return [set(cell.split(",")) for cell in table["labels"]]


def plan_labels(split: str, field: str = "classes") -> list[set[str]]:
    plan = _plan(_DemoParams(0, 16000, 240, 360, 120, 0.3, 0.3))
    return [{DEMO_CLASSES[c] for c in getattr(clip, field)} for clip in plan[split]]


def test_layout_is_valid_fat2019(layout, demo_root):
    assert layout.kind == "fat2019" and layout.warnings == []
    assert layout.classes.names == DEMO_CLASSES and len(DEMO_CLASSES) >= 8
    assert {k: len(v) for k, v in layout.splits.items()} == {"curated": 240, "noisy": 360, "test": 120}
    assert layout.splits["test"].has_labels
    submission = pd.read_csv(demo_root / "sample_submission.csv")
    assert list(submission.columns) == ["fname", *DEMO_CLASSES]
    assert (submission[list(DEMO_CLASSES)] == 0).all().all()
    # Balanced classes: every class is the primary label of 24 curated clips, so it
    # appears at least that often.
    assert layout.splits["curated"].labels.sum(axis=0).min() >= 24


def test_pair_share(layout):
    for split in ("curated", "test"):
        n_labels = layout.splits[split].labels.sum(axis=1)
        assert set(n_labels.tolist()) == {1.0, 2.0}
        assert np.mean(n_labels == 2) == pytest.approx(0.3, abs=0.01)
    assert np.mean([len(s) == 2 for s in plan_labels("noisy")]) == pytest.approx(0.3, abs=0.01)


def test_written_labels_match_plan_and_noisy_share_is_corrupted(demo_root):
    assert csv_labels(demo_root / "train_curated.csv") == plan_labels("curated")
    assert csv_labels(demo_root / "test_truth.csv") == plan_labels("test")
    clean, written = plan_labels("noisy"), csv_labels(demo_root / "train_noisy.csv")
    assert written == plan_labels("noisy", "written")
    corrupted = [w != c for w, c in zip(written, clean)]
    assert np.mean(corrupted) == pytest.approx(0.3, abs=0.01)
    # A corrupted set always holds at least one wrong label (swapped in or added).
    assert all(w - c for w, c, bad in zip(written, clean, corrupted) if bad)


def test_clip_format_and_durations(layout):
    for split in layout.splits.values():
        for path in split.paths():
            info = sf.info(path)
            assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
            assert 1.0 <= info.duration <= 4.0


def clip_features(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Mean log-mel per band with the clip's overall level removed, and the clip's log energy."""
    shapes, energies = [], []
    for path in paths:
        y, sr = sf.read(path, dtype="float32")
        log_mel = librosa.power_to_db(librosa.feature.melspectrogram(
            y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=40)).mean(axis=1)
        shapes.append(log_mel - log_mel.mean())
        energies.append([np.log(np.mean(y.astype(np.float64) ** 2))])
    return np.array(shapes), np.array(energies)


def nearest_centroid_accuracy(x_train, y_train, x_test, y_test) -> float:
    centroids = np.stack([x_train[y_train == c].mean(axis=0) for c in range(len(DEMO_CLASSES))])
    distances = ((x_test[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    return float(np.mean(distances.argmin(axis=1) == y_test))


def test_classes_are_learnable_but_not_by_loudness(layout):
    train, test = layout.splits["curated"], layout.splits["test"]
    single_train = train.labels.sum(axis=1) == 1
    single_test = test.labels.sum(axis=1) == 1
    shape_train, energy_train = clip_features([p for p, s in zip(train.paths(), single_train) if s])
    shape_test, energy_test = clip_features([p for p, s in zip(test.paths(), single_test) if s])
    y_train = train.labels[single_train].argmax(axis=1)
    y_test = test.labels[single_test].argmax(axis=1)
    chance = 1 / len(DEMO_CLASSES)
    # Spectral shape alone already separates most classes (a CNN also sees the time pattern).
    assert nearest_centroid_accuracy(shape_train, y_train, shape_test, y_test) > 3.5 * chance
    # Loudness alone is close to chance.
    assert nearest_centroid_accuracy(energy_train, y_train, energy_test, y_test) < 2.5 * chance


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    first = make_demo_dataset(tmp_path / "a", seed=5, **SMALL)
    second = make_demo_dataset(tmp_path / "b", seed=5, **SMALL)
    other = make_demo_dataset(tmp_path / "c", seed=6, **SMALL)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 12 + 10 + 6 + 5  # clips, four CSVs and the manifest
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    differing = [rel for rel in files if rel.suffix == ".wav"
                 and (first / rel).read_bytes() != (other / rel).read_bytes()]
    assert len(differing) == 28


def test_existing_set_is_reused_and_rebuilt_when_parameters_change(tmp_path):
    root = make_demo_dataset(tmp_path / "demo", seed=1, **SMALL)
    clip = root / "train_curated" / "cur00000.wav"
    clip.write_bytes(b"marker")  # a rebuild would overwrite it
    make_demo_dataset(root, seed=1, **SMALL)
    assert clip.read_bytes() == b"marker"
    make_demo_dataset(root, seed=1, **{**SMALL, "n_test": 4})
    assert clip.read_bytes() != b"marker"
    assert sorted(p.name for p in (root / "test").iterdir()) == [f"tst{i:05d}.wav" for i in range(4)]
    assert len(load_layout(root).splits["test"]) == 4
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["complete"] and manifest["params"]["n_test"] == 4


def test_interrupted_build_is_redone(tmp_path):
    root = make_demo_dataset(tmp_path / "demo", seed=1, **SMALL)
    manifest = json.loads((root / MANIFEST).read_text())
    (root / MANIFEST).write_text(json.dumps({**manifest, "complete": False}))
    (root / "test" / "tst00000.wav").unlink()
    make_demo_dataset(root, seed=1, **SMALL)
    assert load_layout(root).warnings == []


def test_refuses_a_folder_that_is_not_a_demo_set(tmp_path):
    (tmp_path / "README.md").write_text("real data goes here")
    with pytest.raises(FileExistsError, match="not a demo set"):
        make_demo_dataset(tmp_path, **SMALL)
    with pytest.raises(ValueError, match="pair_fraction"):
        make_demo_dataset(tmp_path / "new", pair_fraction=1.5)
