"""Bad options and recipes end in one line naming the option or file and the fix, before any work."""
import pytest

from freesound_tf.cli import main
from freesound_tf.config import ConfigError, load_recipe
from tests.reliability.conftest import write_recipe


@pytest.mark.parametrize("options, message", [
    (["--n-splits", "0"], "--n-splits 0: k-fold training needs at least 2 folds"),
    (["--n-splits", "2", "--folds", "5"], "--folds '5': folds are numbered 0..1 (2 folds)"),
    (["--folds", "0,0"], "--folds '0,0': a fold is listed twice"),
])
def test_train_checks_folds_before_any_work(tmp_path, capsys, options, message):
    work = tmp_path / "work"
    code = main(["train", "--recipe", str(write_recipe(tmp_path / "tiny.toml")), "--input", str(tmp_path / "none"),
                 "--work", str(work), "--run-dir", str(tmp_path / "run"), *options])
    error = capsys.readouterr().err
    assert code == 2 and message in error and len(error.strip().splitlines()) == 1
    assert not work.exists() and not (tmp_path / "run").exists()


def test_folds_to_run_in_a_recipe_are_checked_when_it_is_loaded(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('name = "r"\n[folds]\nn_splits = 3\n[train]\nfolds_to_run = [3]\n')
    with pytest.raises(ConfigError, match=r"r.toml: train.folds_to_run: folds are numbered 0..2"):
        load_recipe(path)


def test_an_empty_recipe_is_refused(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty.toml: the recipe is empty"):
        load_recipe(path)


@pytest.mark.parametrize("model, key", [('name = "cnn10"', "model.name"), ('variant = "se2"', "model.variant")])
def test_unknown_model_or_variant_names_the_recipe_file(tmp_path, capsys, model, key):
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "bad"\n[model]\n{model}\n')
    code = main(["train", "--recipe", str(path), "--input", str(tmp_path / "none"), "--work", str(tmp_path / "w")])
    error = capsys.readouterr().err
    assert code == 2 and f"{path}: {key}: unknown" in error
    assert not (tmp_path / "w").exists()


def test_predict_checks_the_output_folder_before_scoring(tmp_path, capsys):
    code = main(["predict", "--run", str(tmp_path / "run"), "--audio-dir", str(tmp_path), "--out",
                 str(tmp_path / "missing" / "sub.csv"), "--work", str(tmp_path / "work")])
    assert code == 2
    assert f"folder {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


def test_predict_on_a_folder_without_a_readable_clip_fails(tiny_runs, tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a.wav", "b.flac"):
        (clips / name).write_bytes(b"not audio")
    code = main(["predict", "--run", str(tiny_runs[0]), "--audio-dir", str(clips), "--out", str(tmp_path / "s.csv"),
                 "--work", str(tmp_path / "work"), "--workers", "1", "--quiet"])
    assert code == 2 and "none of its 2 audio file(s) could be decoded" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()
