"""Member alignment by fname and class name, and one-line errors naming the run folder."""
import numpy as np
import pytest

from freesound_tf.stacking.members import load_members

CLASSES = ["a", "b", "c"]
FNAMES = [f"clip{i}.wav" for i in range(6)]
TEST_FNAMES = ["t0.wav", "t1.wav"]


def _data(seed):
    rng = np.random.default_rng(seed)
    labels = np.eye(3)[np.arange(6) % 3]
    return rng.random((6, 3)), labels, rng.random((2, 3)), np.eye(3)[[0, 2]]


def test_members_are_aligned_by_fname_and_class_name(make_run):
    oof_a, labels, test_a, test_labels = _data(0)
    oof_b, _, test_b, _ = _data(1)
    run_a = make_run("a", CLASSES, FNAMES, oof_a, labels, TEST_FNAMES, test_a, test_labels)
    # Member b lists clips in reverse and classes in another order.
    rows, cols = np.arange(6)[::-1], [2, 0, 1]
    run_b = make_run("b", [CLASSES[c] for c in cols], [FNAMES[r] for r in rows], oof_b[rows][:, cols],
                     labels[rows][:, cols], TEST_FNAMES[::-1], test_b[::-1][:, cols])
    members = load_members([run_a, run_b])
    assert members.names == ("a", "b") and members.classes.names == tuple(CLASSES) and members.multilabel
    assert members.fnames == tuple(FNAMES) and members.test_fnames == tuple(TEST_FNAMES)
    np.testing.assert_allclose(members.oof, np.stack([oof_a, oof_b]), rtol=1e-6)
    np.testing.assert_allclose(members.test, np.stack([test_a, test_b]), rtol=1e-6)
    np.testing.assert_array_equal(members.labels, labels)
    np.testing.assert_array_equal(members.test_labels, test_labels)
    assert members.dropped == 0


def test_clips_some_member_did_not_score_are_left_out_and_counted(make_run):
    oof, labels, test, _ = _data(0)
    partial = oof.copy()
    partial[[1, 4]] = np.nan  # a fold that member never ran
    members = load_members([make_run("a", CLASSES, FNAMES, oof, labels, TEST_FNAMES, test),
                            make_run("b", CLASSES, FNAMES, partial, labels, TEST_FNAMES, test)])
    assert members.dropped == 2 and members.fnames == tuple(FNAMES[i] for i in (0, 2, 3, 5))
    assert members.oof.shape == (2, 4, 3) and np.isfinite(members.oof).all() and members.test_labels is None


def test_mismatched_members_fail_with_the_run_folder_and_the_fix(make_run):
    oof, labels, test, _ = _data(0)
    good = make_run("a", CLASSES, FNAMES, oof, labels, TEST_FNAMES, test)
    other_clips = make_run("b", CLASSES, FNAMES[:5] + ["other.wav"], oof, labels, TEST_FNAMES, test)
    with pytest.raises(ValueError, match=r"b: its OOF clips differ from those of .*a \(e.g. 'clip5.wav'\)"):
        load_members([good, other_clips])
    other_classes = make_run("c", ["a", "b", "z"], FNAMES, oof, labels, TEST_FNAMES, test)
    with pytest.raises(ValueError, match="c: its classes or task type differ"):
        load_members([good, other_classes])
    single_label = make_run("d", CLASSES, FNAMES, oof, labels, TEST_FNAMES, test, multilabel=False)
    with pytest.raises(ValueError, match="d: its classes or task type differ"):
        load_members([good, single_label])
    other_labels = make_run("e", CLASSES, FNAMES, oof, labels[::-1], TEST_FNAMES, test)
    with pytest.raises(ValueError, match="e: its training labels differ"):
        load_members([good, other_labels])
    other_test = make_run("f", CLASSES, FNAMES, oof, labels, ["t0.wav", "t9.wav"], test)
    with pytest.raises(ValueError, match="f: its test clips differ"):
        load_members([good, other_test])
    with pytest.raises(ValueError, match="member name 'a' is also the name of"):
        load_members([good, good])


def test_unfinished_runs_name_the_missing_file(make_run, tmp_path):
    oof, labels, test, _ = _data(0)
    run = make_run("a", CLASSES, FNAMES, oof, labels, TEST_FNAMES, test)
    (run / "test.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"a/test.npy: missing; .*freesound-tf train"):
        load_members([run])
    np.save(run / "test.npy", test[:1])
    with pytest.raises(ValueError, match=r"a/test.npy: shape \(1, 3\) does not match 2 clips"):
        load_members([run])
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        load_members([tmp_path / "nowhere"])
    with pytest.raises(ValueError, match="no member runs given"):
        load_members([])


def test_the_group_column_of_the_first_member_follows_the_oof_clips(make_run):
    oof, labels, test, _ = _data(0)
    groups = ["r0", "r0", "r1", "r1", "r2", "r2"]
    run_a = make_run("a", CLASSES, FNAMES, oof, labels, TEST_FNAMES, test, groups=groups)
    oof[0] = np.nan  # clip0 unscored by member b: left out, with its group
    run_b = make_run("b", CLASSES, FNAMES, oof, labels, TEST_FNAMES, test)
    assert load_members([run_a, run_b]).groups == tuple(groups[1:])
    assert load_members([run_b, run_a]).groups is None  # the first member's oof.csv decides
