"""Kaggle layouts: parsing, class order, every validation error, warnings, ClassMap."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from freesound_tf.data.layout import (
    ClassMap,
    DataValidationError,
    SplitTable,
    detect_layout,
    load_layout,
)

# Deliberately not alphabetical: the class order must come from sample_submission.csv.
CLASSES_2019 = ["Walk_and_footsteps", "Bark", "Accordion"]


def write_wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(80, np.float32), 8000, subtype="PCM_16")


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.lstrip("\n"))


def make_fat2019(root: Path, noisy: bool = True, truth: bool = True) -> Path:
    write_text(root / "train_curated.csv", """
fname,labels
c1.wav,Bark
c2.wav,"Bark,Walk_and_footsteps"
c3.wav, Accordion
""")
    if noisy:
        write_text(root / "train_noisy.csv", """
fname,labels
n1.wav,"Accordion , Bark"
n2.wav,Walk_and_footsteps
""")
        for f in ("n1.wav", "n2.wav"):
            write_wav(root / "train_noisy" / f)
    write_text(root / "sample_submission.csv",
               "fname," + ",".join(CLASSES_2019) + "\nt1.wav,0,0,0\nt2.wav,0,0,0\n")
    if truth:
        write_text(root / "test_truth.csv", """
fname,labels
t2.wav,Accordion
t1.wav,"Bark,Accordion"
""")
    for f in ("c1.wav", "c2.wav", "c3.wav"):
        write_wav(root / "train_curated" / f)
    for f in ("t1.wav", "t2.wav"):
        write_wav(root / "test" / f)
    return root


def make_fat2018(root: Path, truth: bool = True) -> Path:
    write_text(root / "train.csv", """
fname,label,manually_verified
a.wav,Hi-hat,1
b.wav,Acoustic_guitar,0
c.wav,Hi-hat,0
d.wav,Bark,1
""")
    write_text(root / "sample_submission.csv", """
fname,label
x.wav,Hi-hat Bark Acoustic_guitar
y.wav,Hi-hat Bark Acoustic_guitar
""")
    if truth:
        write_text(root / "test_truth.csv", "fname,label\ny.wav,Bark\nx.wav,Hi-hat\n")
    for f in ("a.wav", "b.wav", "c.wav", "d.wav"):
        write_wav(root / "audio_train" / f)
    for f in ("x.wav", "y.wav"):
        write_wav(root / "audio_test" / f)
    return root


def expect_error(root: Path, file: str, line: int | None, problem: str, fix: str, **kwargs) -> str:
    """load_layout must fail with '<file>:<line>: <problem>; <fix>' on one line."""
    with pytest.raises(DataValidationError) as info:
        load_layout(root, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    where = re.escape(str(root / file)) + (f":{line}:" if line is not None else ":")
    assert re.match(where, message), message
    assert problem in message, message
    assert "; " in message and fix in message.split("; ", 1)[1], message
    return message


# --- parsing -----------------------------------------------------------------------------


def test_fat2019_parses_with_class_order_from_sample_submission(tmp_path):
    layout = load_layout(make_fat2019(tmp_path))
    assert layout.kind == "fat2019" and layout.multilabel
    assert layout.classes.names == tuple(CLASSES_2019)
    assert set(layout.splits) == {"curated", "noisy", "test"}
    curated = layout.splits["curated"]
    assert curated.fnames == ["c1.wav", "c2.wav", "c3.wav"]
    # Columns: Walk_and_footsteps, Bark, Accordion.
    np.testing.assert_array_equal(curated.labels, [[0, 1, 0], [1, 1, 0], [0, 0, 1]])
    assert curated.labels.dtype == np.float32 and curated.has_labels
    assert curated.paths() == [tmp_path / "train_curated" / f for f in curated.fnames]
    # Whitespace around labels inside the quoted cell is ignored.
    np.testing.assert_array_equal(layout.splits["noisy"].labels, [[0, 1, 1], [1, 0, 0]])
    test = layout.splits["test"]
    assert test.fnames == ["t1.wav", "t2.wav"] and test.has_labels
    # test_truth rows are in another order; labels follow sample_submission order.
    np.testing.assert_array_equal(test.labels, [[0, 1, 1], [0, 0, 1]])
    assert test.audio_dir == tmp_path / "test"
    assert layout.warnings == []


def test_fat2019_without_truth_and_without_noisy(tmp_path, caplog):
    make_fat2019(tmp_path, noisy=False, truth=False)
    with caplog.at_level(logging.WARNING, logger="freesound_tf.data.layout"):
        layout = load_layout(tmp_path)
    assert set(layout.splits) == {"curated", "test"}
    assert any("curated-only" in w for w in layout.warnings)
    assert any("curated-only" in r.getMessage() for r in caplog.records)
    test = layout.splits["test"]
    assert not test.has_labels
    np.testing.assert_array_equal(test.labels, np.zeros((2, 3)))


def test_fat2018_parses_single_label_with_sorted_classes(tmp_path):
    layout = load_layout(make_fat2018(tmp_path))
    assert layout.kind == "fat2018" and not layout.multilabel
    assert layout.classes.names == ("Acoustic_guitar", "Bark", "Hi-hat")
    train = layout.splits["train"]
    np.testing.assert_array_equal(train.labels.argmax(1), [2, 0, 2, 1])
    np.testing.assert_array_equal(train.labels.sum(1), 1)
    np.testing.assert_array_equal(train.manually_verified, [True, False, False, True])
    test = layout.splits["test"]
    assert test.fnames == ["x.wav", "y.wav"] and test.has_labels
    np.testing.assert_array_equal(test.labels.argmax(1), [2, 1])
    assert test.audio_dir == tmp_path / "audio_test"


def test_fat2018_test_without_truth_is_unlabeled(tmp_path):
    layout = load_layout(make_fat2018(tmp_path, truth=False))
    assert not layout.splits["test"].has_labels
    assert layout.splits["test"].labels.sum() == 0


def test_detect_layout(tmp_path):
    assert detect_layout(make_fat2019(tmp_path / "a")) == "fat2019"
    assert detect_layout(make_fat2018(tmp_path / "b")) == "fat2018"
    (tmp_path / "c").mkdir()
    with pytest.raises(DataValidationError, match="train_curated.csv.*train.csv.*input/README.md"):
        detect_layout(tmp_path / "c")
    with pytest.raises(DataValidationError, match="not found"):
        detect_layout(tmp_path / "missing")
    make_fat2018(tmp_path / "a")
    with pytest.raises(DataValidationError, match="both.*kind="):
        detect_layout(tmp_path / "a")
    assert load_layout(tmp_path / "a", kind="fat2018").kind == "fat2018"


def test_extra_audio_files_are_a_warning(tmp_path, caplog):
    make_fat2019(tmp_path)
    write_wav(tmp_path / "train_curated" / "orphan.wav")
    (tmp_path / "train_curated" / ".DS_Store").write_text("")
    with caplog.at_level(logging.WARNING, logger="freesound_tf.data.layout"):
        layout = load_layout(tmp_path)
    assert len(layout.warnings) == 1
    assert "1 file(s)" in layout.warnings[0] and "orphan.wav" in layout.warnings[0]
    assert "train_curated.csv" in layout.warnings[0]
    assert any("orphan.wav" in r.getMessage() for r in caplog.records)


def test_check_files_false_skips_the_audio(tmp_path):
    make_fat2019(tmp_path)
    (tmp_path / "train_curated" / "c2.wav").unlink()
    layout = load_layout(tmp_path, check_files=False)
    assert len(layout.splits["curated"]) == 3


# --- validation errors -------------------------------------------------------------------


def test_missing_column(tmp_path):
    make_fat2019(tmp_path)
    write_text(tmp_path / "train_curated.csv", "fname,label\nc1.wav,Bark\n")
    expect_error(tmp_path, "train_curated.csv", 1, "missing column(s) ['labels']", "header must be")


def test_extra_column(tmp_path):
    make_fat2018(tmp_path)
    write_text(tmp_path / "train.csv", "fname,label,manually_verified,notes\na.wav,Bark,1,x\n")
    expect_error(tmp_path, "train.csv", 1, "unexpected column(s) ['notes']", "exactly")


def test_repeated_column(tmp_path):
    make_fat2019(tmp_path)
    write_text(tmp_path / "sample_submission.csv", "fname,Bark,Bark\nt1.wav,0,0\n")
    expect_error(tmp_path, "sample_submission.csv", 1, "repeated column", "unique name")


def test_empty_csv(tmp_path):
    make_fat2019(tmp_path)
    write_text(tmp_path / "train_noisy.csv", "fname,labels\n\n")
    expect_error(tmp_path, "train_noisy.csv", 2, "no data rows", "at least one")
    (tmp_path / "train_noisy.csv").write_text("")
    expect_error(tmp_path, "train_noisy.csv", 1, "empty file", "restore")


def test_missing_csv(tmp_path):
    make_fat2019(tmp_path)
    (tmp_path / "sample_submission.csv").unlink()
    expect_error(tmp_path, "sample_submission.csv", None, "file not found", "Kaggle")


def test_unknown_label_names_line_and_suggests(tmp_path):
    make_fat2019(tmp_path)
    # Line 3 (header is line 1); the blank line 2 must not shift the count.
    write_text(tmp_path / "train_curated.csv", 'fname,labels\n\nc1.wav,"Bark,Acordion"\n')
    message = expect_error(tmp_path, "train_curated.csv", 3, "unknown label 'Acordion'", "spelling")
    assert "did you mean 'Accordion'" in message


def test_unknown_label_fat2018_truth(tmp_path):
    make_fat2018(tmp_path)
    write_text(tmp_path / "test_truth.csv", "fname,label\nx.wav,Hi-hat\ny.wav,Cello\n")
    expect_error(tmp_path, "test_truth.csv", 3, "unknown label 'Cello'", "spelling")


@pytest.mark.parametrize("cell", ['""', '"Bark,"', '" , Bark"'])
def test_empty_label(tmp_path, cell):
    make_fat2019(tmp_path)
    write_text(tmp_path / "train_curated.csv", f"fname,labels\nc1.wav,Bark\nc2.wav,{cell}\n")
    expect_error(tmp_path, "train_curated.csv", 3, "empty", "")


def test_missing_field_is_an_empty_cell(tmp_path):
    make_fat2018(tmp_path)
    write_text(tmp_path / "train.csv", "fname,label,manually_verified\na.wav,Bark,1\nb.wav\n")
    expect_error(tmp_path, "train.csv", 3, "empty 'label' cell", "fill it in")


def test_bad_manually_verified(tmp_path):
    make_fat2018(tmp_path)
    write_text(tmp_path / "train.csv", "fname,label,manually_verified\na.wav,Bark,yes\n")
    expect_error(tmp_path, "train.csv", 2, "manually_verified is 'yes'", "use 0 or 1")


def test_duplicate_fname(tmp_path):
    make_fat2019(tmp_path)
    write_text(tmp_path / "train_curated.csv", "fname,labels\nc1.wav,Bark\nc2.wav,Bark\nc1.wav,Bark\n")
    expect_error(tmp_path, "train_curated.csv", 4, "duplicate fname 'c1.wav' (first at line 2)",
                 "remove")


def test_fname_with_folder(tmp_path):
    make_fat2019(tmp_path)
    write_text(tmp_path / "train_curated.csv", "fname,labels\n../c1.wav,Bark\n")
    expect_error(tmp_path, "train_curated.csv", 2, "contains a folder", "bare file name")


def test_missing_audio_file(tmp_path):
    make_fat2019(tmp_path)
    (tmp_path / "train_curated" / "c2.wav").unlink()
    (tmp_path / "train_curated" / "c3.wav").unlink()
    expect_error(tmp_path, "train_curated.csv", 3, "train_curated/c2.wav not found (and 1 more rows)",
                 "add the file or remove the row")


def test_missing_test_audio_names_sample_submission(tmp_path):
    make_fat2018(tmp_path)
    (tmp_path / "audio_test" / "y.wav").unlink()
    expect_error(tmp_path, "sample_submission.csv", 3, "audio_test/y.wav not found", "add the file")


def test_missing_audio_folder(tmp_path):
    make_fat2019(tmp_path)
    for f in (tmp_path / "test").iterdir():
        f.unlink()
    (tmp_path / "test").rmdir()
    expect_error(tmp_path, "test", None, "audio folder missing", "copy")


def test_malformed_csv(tmp_path):
    make_fat2019(tmp_path)
    write_text(tmp_path / "train_curated.csv", "fname,labels\nc1.wav,Bark\nc2.wav,Bark,Bark\n")
    expect_error(tmp_path, "train_curated.csv", 3, "malformed CSV", "quoting")
    write_text(tmp_path / "train_curated.csv", 'fname,labels\nc1.wav,Bark\nc2.wav,"Bark\n')
    expect_error(tmp_path, "train_curated.csv", 3, "malformed CSV", "quoting")


def test_not_utf8(tmp_path):
    make_fat2019(tmp_path)
    (tmp_path / "train_curated.csv").write_bytes(b"fname,labels\nc1.wav,B\xe9ark\n")
    expect_error(tmp_path, "train_curated.csv", None, "not UTF-8", "save the file as UTF-8")


def test_truth_must_match_test_clips(tmp_path):
    make_fat2019(tmp_path)
    write_text(tmp_path / "test_truth.csv", "fname,labels\nt1.wav,Bark\nzz.wav,Bark\n")
    expect_error(tmp_path, "test_truth.csv", 3, "'zz.wav' is not a test clip", "remove the row")
    write_text(tmp_path / "test_truth.csv", "fname,labels\nt1.wav,Bark\n")
    expect_error(tmp_path, "test_truth.csv", None, "no row for 1 test clip(s)", "add their labels")


def test_sample_submission_without_classes(tmp_path):
    make_fat2019(tmp_path)
    write_text(tmp_path / "sample_submission.csv", "fname\nt1.wav\n")
    expect_error(tmp_path, "sample_submission.csv", 1, "no class columns", "one column per class")


def test_unknown_kind(tmp_path):
    with pytest.raises(DataValidationError, match="unknown layout kind 'fat2020'"):
        load_layout(make_fat2019(tmp_path), kind="fat2020")


# --- ClassMap and SplitTable -------------------------------------------------------------


def test_class_map_json_round_trip(tmp_path):
    classes = ClassMap(("Walk_and_footsteps", "Bark", "Accordion"))
    path = tmp_path / "classes.json"
    classes.to_json(path)
    data = json.loads(path.read_text())
    assert data == {"classes": ["Walk_and_footsteps", "Bark", "Accordion"],
                    "index": {"Walk_and_footsteps": 0, "Bark": 1, "Accordion": 2}}
    assert ClassMap.from_json(path) == classes
    path.write_text(json.dumps({"classes": ["a", "b"], "index": {"a": 1, "b": 0}}))
    with pytest.raises(DataValidationError, match="disagrees"):
        ClassMap.from_json(path)
    path.write_text("{")
    with pytest.raises(DataValidationError, match="not valid JSON"):
        ClassMap.from_json(path)


def test_class_map_encode_decode():
    classes = ClassMap(("c0", "c1", "c2", "c3"))
    assert len(classes) == 4 and classes.index("c2") == 2
    encoded = classes.encode([["c1"], ["c3", "c0"], []])
    expected = np.array([[0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(encoded, expected)
    assert encoded.dtype == np.float32
    assert classes.decode(encoded[1]) == ["c0", "c3"]
    scores = np.array([0.2, 0.9, 0.6, 0.1])
    assert classes.decode(scores) == ["c1", "c2"]
    assert classes.decode(scores, top_k=3) == ["c1", "c2", "c0"]
    with pytest.raises(KeyError, match="did you mean 'c1'"):
        classes.encode([["c1x"]])
    with pytest.raises(ValueError, match="duplicate"):
        ClassMap(("a", "a"))


def test_split_table_subset(tmp_path):
    table = SplitTable("train", tmp_path, ["a", "b", "c"], np.eye(3), True,
                       manually_verified=np.array([True, False, True]))
    part = table.subset([2, 0])
    assert part.fnames == ["c", "a"]
    np.testing.assert_array_equal(part.labels, np.eye(3)[[2, 0]])
    np.testing.assert_array_equal(part.manually_verified, [True, True])
    masked = table.subset(np.array([False, True, False]))
    assert masked.fnames == ["b"] and masked.paths() == [tmp_path / "b"]


def test_a_group_column_names_each_training_clips_recording(tmp_path):
    make_fat2019(tmp_path)
    write_text(tmp_path / "train_curated.csv", 'fname,labels,group\nc1.wav,Bark,rec7\nc2.wav,"Bark",rec7\nc3.wav,Bark,\n')
    layout = load_layout(tmp_path)
    assert layout.splits["curated"].groups == ["rec7", "rec7", ""]
    assert layout.splits["curated"].subset([2, 0]).groups == ["", "rec7"]
    assert layout.splits["noisy"].groups is None and layout.splits["test"].groups is None
    # Only the training CSV takes it: the noisy split never makes folds.
    write_text(tmp_path / "train_noisy.csv", "fname,labels,group\nn1.wav,Bark,r1\n")
    expect_error(tmp_path, "train_noisy.csv", 1, "unexpected column(s) ['group']", "exactly")


def test_the_fat2018_train_csv_takes_a_group_column_too(tmp_path):
    make_fat2018(tmp_path)
    text = (tmp_path / "train.csv").read_text().splitlines()
    rows = [text[0] + ",group"] + [f"{line},speaker{i % 2}" for i, line in enumerate(text[1:])]
    write_text(tmp_path / "train.csv", "\n".join(rows) + "\n")
    groups = load_layout(tmp_path).splits["train"].groups
    assert groups == [f"speaker{i % 2}" for i in range(len(rows) - 1)]
