"""Noisy-set pseudo-labelling: strategies on synthetic scores, errors, the CLI and the --noisy-csv path."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import tomli_w
from sklearn.metrics import label_ranking_average_precision_score

from freesound_tf.cli import main
from freesound_tf.config import AudioConfig, FoldsConfig, Recipe, StageConfig, TrainConfig, to_dict
from freesound_tf.data.layout import DataValidationError, load_layout
from freesound_tf.data.prepare import prepare_data
from freesound_tf.relabel import agreement, relabel, relabel_summary

CLASSES = [f"class_{i}" for i in range(8)]
SR = 8000


def names(row: np.ndarray) -> str:
    return ",".join(CLASSES[i] for i in np.flatnonzero(row))


def synthetic(n_clean: int, n_corrupt: int, seed: int = 0):
    """Noisy table whose first ``n_clean`` clips (before shuffling) carry their true labels and the rest
    labels disjoint from the truth; scores = truth * 0.8 + 0.1 + noise below 0.09, so every true class
    outscores every other one. Returns (noisy, predictions, true multi-hot, clean mask)."""
    rng = np.random.default_rng(seed)
    n, c = n_clean + n_corrupt, len(CLASSES)
    true, given = np.zeros((n, c)), np.zeros((n, c))
    for i in range(n):
        classes = rng.permutation(c)
        k_true, k_given = rng.integers(1, 3, size=2)
        true[i, classes[:k_true]] = 1
        given[i, classes[:k_true] if i < n_clean else classes[k_true:k_true + k_given]] = 1
    order = rng.permutation(n)  # clean clips spread over the table, not first
    true, given, clean = true[order], given[order], (np.arange(n) < n_clean)[order]
    fnames = [f"n{i:03d}.wav" for i in range(n)]
    noisy = pd.DataFrame({"fname": fnames, "labels": [names(row) for row in given]})
    scores = 0.1 + 0.8 * true + rng.uniform(-0.09, 0.09, true.shape)
    predictions = pd.DataFrame(scores, columns=CLASSES)
    predictions.insert(0, "fname", fnames)
    return noisy, predictions.sample(frac=1.0, random_state=1), true, clean  # prediction rows in another order


def test_scoring_keeps_exactly_the_clean_clips_with_their_given_labels():
    noisy, predictions, _, clean = synthetic(n_clean=20, n_corrupt=40)
    new = relabel(noisy, predictions, "scoring_20", CLASSES)
    assert list(new["fname"]) == list(noisy["fname"][clean])  # the clean ones, in noisy row order
    assert list(new["labels"]) == list(noisy["labels"][clean])
    assert relabel_summary(noisy, new) == {"clips": 60, "kept": 20, "dropped": 40, "changed": 0,
                                           "labels_added": 0, "labels_removed": 0}
    more = relabel(noisy, predictions, "scoring_25", CLASSES)
    assert set(new["fname"]) < set(more["fname"]) and len(more) == 25


def test_agreement_is_per_clip_lrap_and_ties_break_by_confidence_then_row():
    noisy, predictions, _, _ = synthetic(n_clean=5, n_corrupt=5, seed=3)
    given = np.stack([[c in cell.split(",") for c in CLASSES] for cell in noisy["labels"]]).astype(float)
    scores = predictions.set_index("fname").loc[noisy["fname"], CLASSES].to_numpy()
    lrap, confidence = agreement(given, scores)
    reference = [label_ranking_average_precision_score(given[i:i + 1], scores[i:i + 1]) for i in range(10)]
    np.testing.assert_allclose(lrap, reference)
    np.testing.assert_allclose(confidence, [scores[i][given[i] > 0].mean() for i in range(10)])

    # Three clips that all rank their label first (agreement 1.0): the most confident wins, then row order.
    table = pd.DataFrame({"fname": ["a.wav", "b.wav", "c.wav"], "labels": CLASSES[:3]})
    tied = np.full((3, 8), 0.1)
    tied[0, 0], tied[1, 1], tied[2, 2] = 0.6, 0.9, 0.6
    preds = pd.DataFrame(tied, columns=CLASSES).assign(fname=table["fname"])
    assert list(relabel(table, preds, "scoring_1", CLASSES)["fname"]) == ["b.wav"]
    assert list(relabel(table, preds, "scoring_2", CLASSES)["fname"]) == ["a.wav", "b.wav"]


def test_relabelall_recovers_the_true_labels_and_drops_clips_without_any():
    noisy, predictions, true, clean = synthetic(n_clean=20, n_corrupt=40, seed=1)
    silent = noisy["fname"].iloc[[3, 17, 42]]
    quiet = predictions["fname"].isin(silent)
    predictions.loc[quiet, CLASSES] = 0.1 + predictions.loc[quiet, CLASSES] * 0.3  # every score < 0.5
    new = relabel(noisy, predictions, "relabelall", CLASSES)
    keep = ~noisy["fname"].isin(silent).to_numpy()
    assert list(new["fname"]) == list(noisy["fname"][keep])
    assert list(new["labels"]) == [names(row) for row in true[keep]]
    summary = relabel_summary(noisy, new)
    assert summary["dropped"] == 3 and summary["changed"] == int((keep & ~clean).sum())
    # Corrupted labels are disjoint from the truth: every one of them is replaced.
    given_count = sum(len(cell.split(",")) for cell in noisy["labels"][keep & ~clean])
    assert summary["labels_removed"] == given_count
    strict = relabel(noisy, predictions, "relabelall", CLASSES, threshold=0.95)
    assert len(strict) < len(new)


@pytest.mark.parametrize("strategy, edit, message", [
    ("scoring_x", None, "unknown relabel strategy 'scoring_x'; use scoring_K"),
    ("scoring_61", None, "K=61 but noisy.csv has 60 clips; use K between 1 and 60"),
    ("scoring_0", None, "K=0"),
    ("relabelall", "drop_row", "preds.csv: no scores for 1 clip(s) of noisy.csv"),
    ("relabelall", "rename_column", "preds.csv: class columns do not match the class map (missing ['class_7'], "
                                    "unexpected ['Class_7'])"),
    ("relabelall", "nan", "preds.csv: missing or non-finite score"),
    ("relabelall", "unknown_label", "noisy.csv: clip 'n000.wav' has labels 'Barkk'"),
])
def test_errors_are_one_line_naming_the_source_and_fix(strategy, edit, message):
    noisy, predictions, _, _ = synthetic(n_clean=20, n_corrupt=40)
    if edit == "drop_row":
        predictions = predictions.iloc[1:]
    elif edit == "rename_column":
        predictions = predictions.rename(columns={"class_7": "Class_7"})
    elif edit == "nan":
        predictions.iloc[4, 2] = np.nan
    elif edit == "unknown_label":
        noisy.loc[0, "labels"] = "Barkk"
    with pytest.raises(ValueError) as info:
        relabel(noisy, predictions, strategy, CLASSES, noisy_source="noisy.csv", predictions_source="preds.csv")
    text = str(info.value)
    assert message in text and "\n" not in text and "; " in text


# --- the command and the --noisy-csv training path -------------------------------------------------

@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """A FAT2019 layout of short noise clips: 4 curated, 12 noisy (known clean ones), 2 test clips."""
    root = tmp_path_factory.mktemp("layout")
    noisy, predictions, true, clean = synthetic(n_clean=5, n_corrupt=7, seed=2)
    rng = np.random.default_rng(0)
    rows = {"train_curated": [(f"c{i}.wav", CLASSES[i]) for i in range(4)], "train_noisy": list(noisy.itertuples(index=False)),
            "test": [("t0.wav", ""), ("t1.wav", "")]}
    for folder, clips in rows.items():
        (root / folder).mkdir()
        for fname, _ in clips:
            sf.write(root / folder / fname, rng.uniform(-0.5, 0.5, SR // 5), SR, subtype="PCM_16")
    pd.DataFrame(rows["train_curated"], columns=["fname", "labels"]).to_csv(root / "train_curated.csv", index=False)
    noisy.to_csv(root / "train_noisy.csv", index=False)
    pd.DataFrame(0, index=range(2), columns=CLASSES).assign(fname=["t0.wav", "t1.wav"])[["fname", *CLASSES]] \
        .to_csv(root / "sample_submission.csv", index=False)
    predictions.to_csv(root / "noisy_probabilities.csv", index=False, float_format="%.6f")
    return root, noisy, true, clean


def test_cli_writes_a_noisy_csv_that_the_layout_accepts(layout, tmp_path, capsys):
    root, noisy, true, clean = layout
    base = ["relabel", "--input", str(root), "--predictions", str(root / "noisy_probabilities.csv")]
    assert main(base + ["--strategy", "scoring_5", "--out", str(tmp_path / "top5.csv")]) == 0
    assert "kept 5 of 12 noisy clips (7 dropped)" in capsys.readouterr().out
    split = load_layout(root, noisy_csv=tmp_path / "top5.csv").splits["noisy"]
    assert split.fnames == list(noisy["fname"][clean]) and split.audio_dir == root / "train_noisy"
    np.testing.assert_array_equal(split.labels, true[clean])  # clean clips: given labels == truth

    assert main(base + ["--strategy", "relabelall", "--out", str(tmp_path / "all.csv")]) == 0
    assert "labels changed on 7 kept clip(s)" in capsys.readouterr().out
    split = load_layout(root, noisy_csv=tmp_path / "all.csv").splits["noisy"]
    np.testing.assert_array_equal(split.labels, true)

    assert main(base + ["--strategy", "scoring_13", "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train_noisy.csv has 12 clips" in err
    assert main(base + ["--strategy", "relabelall", "--out", str(root / "train_noisy.csv")]) == 2
    assert "would overwrite the noisy CSV" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_noisy_csv_option_reuses_the_noisy_cache_with_the_new_labels(layout, tmp_path, capsys, monkeypatch):
    root, noisy, true, clean = layout
    new_csv = tmp_path / "top5.csv"
    assert main(["relabel", "--input", str(root), "--predictions", str(root / "noisy_probabilities.csv"),
                 "--strategy", "scoring_5", "--out", str(new_csv)]) == 0
    audio, work = AudioConfig(sample_rate=SR), tmp_path / "work"
    full = prepare_data(root, audio, work, splits=["noisy"], workers=1, progress=False)
    cache_file = full.splits["noisy"].cache_path
    stamp = cache_file.stat().st_mtime_ns

    # The CLI path: prepare --noisy-csv writes the subset's counts, reusing the cache untouched.
    recipe = Recipe(name="r", audio=audio, folds=FoldsConfig(n_splits=2),
                    train=TrainConfig(pretrain=StageConfig(epochs=1)))
    (tmp_path / "r.toml").write_text(tomli_w.dumps(to_dict(recipe)))
    assert main(["prepare", "--input", str(root), "--noisy-csv", str(new_csv), "--recipe", str(tmp_path / "r.toml"),
                 "--work", str(work), "--workers", "1", "--quiet"]) == 0
    assert re.search(r"noisy\s+5 clips cached", capsys.readouterr().out)
    assert cache_file.stat().st_mtime_ns == stamp

    data = prepare_data(root, audio, work, splits=["curated", "noisy"], workers=1, progress=False, noisy_csv=new_csv)
    split = data.splits["noisy"]
    assert split.cache_path == cache_file and cache_file.stat().st_mtime_ns == stamp
    with split.open() as cache:
        assert len(cache) == 12  # the full noisy set's audio
        rows = split.rows(cache)
        labels = split.labels(cache, allow_extra=True)
        assert sorted(cache.fnames[r] for r in rows) == sorted(noisy["fname"][clean])
        truth = dict(zip(noisy["fname"], true))
        for r in rows:
            np.testing.assert_array_equal(labels[r], truth[cache.fnames[r]])
        with pytest.raises(ValueError, match="7 clip\\(s\\) without a row in the noisy CSV"):
            split.labels(cache)

    # Noisy pretraining gets exactly the relabelled clips (fit_stage replaced: no training).
    from freesound_tf.training import member

    seen = {}
    monkeypatch.setattr(member, "fit_stage", lambda make, compile_, stage, out, train_input, *rest, **options:
                        seen.update(rows=train_input.indices, labels=train_input.labels))
    curated_split = data.splits["curated"]
    with curated_split.open() as curated:
        member.MemberTrainer(recipe, data, tmp_path / "run", verbose=0).pretrain(curated, curated_split.labels(curated))
    np.testing.assert_array_equal(seen["rows"], rows)
    np.testing.assert_array_equal(seen["labels"][rows], labels[rows])


def test_noisy_csv_errors_name_the_file(layout, tmp_path):
    root = layout[0]
    with pytest.raises(DataValidationError, match="missing.csv: noisy CSV not found"):
        load_layout(root, noisy_csv=tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("fname,labels\nn000.wav,Barkk\n")
    with pytest.raises(DataValidationError, match=r"bad.csv:2: unknown label 'Barkk'"):
        load_layout(root, noisy_csv=tmp_path / "bad.csv")
