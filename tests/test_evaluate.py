import numpy as np
import pandas as pd
import pytest

from freesound_tf.data.layout import DataValidationError
from freesound_tf.evaluate import evaluate_submission, format_report
from freesound_tf.metrics import lwlrap, map_at_k

CLASSES = ["Bark", "Chirp", "Drip", "Hum"]


def _truth(path, rows, column="labels"):
    pd.DataFrame({"fname": [r[0] for r in rows], column: [r[1] for r in rows]}).to_csv(path, index=False)


def test_fat2019_submission_scores_match_the_metric(tmp_path):
    rng = np.random.default_rng(0)
    labels = [("a.wav", "Bark"), ("b.wav", "Chirp,Hum"), ("c.wav", "Drip"), ("d.wav", "Hum,Bark")]
    _truth(tmp_path / "truth.csv", labels)
    scores = rng.random((4, 4))
    sub = pd.DataFrame(scores, columns=CLASSES)
    sub.insert(0, "fname", ["d.wav", "c.wav", "b.wav", "a.wav"])  # order differs from truth
    sub.to_csv(tmp_path / "sub.csv", index=False)
    result = evaluate_submission(tmp_path / "sub.csv", tmp_path / "truth.csv")
    y = np.array([[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0], [1, 0, 0, 1]], float)
    assert result["lwlrap"] == pytest.approx(lwlrap(y, scores[::-1]))
    assert "map3" not in result  # multi-label truth: MAP@3 is not defined
    assert [row["class"] for row in result["per_class"]] == CLASSES
    assert "lwlrap" in format_report(result)


def test_fat2018_top3_submission_gets_map3(tmp_path):
    _truth(tmp_path / "truth.csv", [("a.wav", "Bark"), ("b.wav", "Hum"), ("c.wav", "Drip")], column="label")
    pd.DataFrame({"fname": ["a.wav", "b.wav", "c.wav"],
                  "label": ["Bark Hum Drip", "Drip Hum Bark", "Bark Hum Chirp"]}).to_csv(tmp_path / "sub.csv", index=False)
    result = evaluate_submission(tmp_path / "sub.csv", tmp_path / "truth.csv")
    assert result["map3"] == pytest.approx((1 + 1 / 2 + 0) / 3)  # c's Drip is not among its guesses


def test_single_label_score_submission_gets_both(tmp_path):
    _truth(tmp_path / "truth.csv", [("a.wav", "Bark"), ("b.wav", "Hum")])
    scores = np.array([[0.1, 0.9, 0.3, 0.2], [0.1, 0.2, 0.3, 0.9]])
    sub = pd.DataFrame(scores, columns=CLASSES)
    sub.insert(0, "fname", ["a.wav", "b.wav"])
    sub.to_csv(tmp_path / "sub.csv", index=False)
    result = evaluate_submission(tmp_path / "sub.csv", tmp_path / "truth.csv")
    # a: Bark scored lowest of four (outside the top 3) -> 0; b: Hum scored highest -> 1
    assert result["map3"] == pytest.approx(map_at_k(np.array([0, 3]), scores)) == pytest.approx(0.5)


def test_errors_name_the_file_and_the_fix(tmp_path):
    _truth(tmp_path / "truth.csv", [("a.wav", "Bark"), ("b.wav", "Meow")])
    sub = pd.DataFrame(np.ones((1, 4)), columns=CLASSES)
    sub.insert(0, "fname", ["a.wav"])
    sub.to_csv(tmp_path / "sub.csv", index=False)
    with pytest.raises(DataValidationError, match=r"sub\.csv: 1 clip\(s\) of truth\.csv have no row.*b\.wav"):
        evaluate_submission(tmp_path / "sub.csv", tmp_path / "truth.csv")
    sub = pd.DataFrame(np.ones((2, 4)), columns=CLASSES)
    sub.insert(0, "fname", ["a.wav", "b.wav"])
    sub.to_csv(tmp_path / "sub.csv", index=False)
    with pytest.raises(DataValidationError, match=r"truth\.csv:3: label 'Meow' is not a column"):
        evaluate_submission(tmp_path / "sub.csv", tmp_path / "truth.csv")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        evaluate_submission(tmp_path / "missing.csv", tmp_path / "truth.csv")
