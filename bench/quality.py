"""Tagging quality on real recordings the models never heard: the UrbanSound8K subset, two splits.

Each split is the shared subset in the FAT2019 layout, its test clips from recordings heard nowhere
in training (``make_fat_layout.py`` splits a fold by source recording), its curated CSV with each
clip's recording as the ``group`` column (bench/shared_layout.py), so the curated folds keep every
recording whole and OOF scores, like test scores, are on recordings the model never heard:
  A   curated from fold 1; noisy and test from fold 2 (seed 7, the tool's default)
  B   the folds swapped: curated from fold 2; noisy and test from fold 1 (seed 8)
Per split, side by side on the same test clips (OOF and test lwlrap, minutes):
  sklearn peer                log-mel + MFCC mean/std -> one-vs-rest logistic regression, curated only
  <recipe>, curated only      each CPU recipe (models/cpu_*.toml) without its noisy pretraining
  <recipe>, noisy -> curated  each CPU recipe as it ships
  blends, stacker             over the noisy -> curated members (stacking/cpu.toml)
  final choice                what run.sh would submit: chosen on the OOF matrix alone (nested CV),
                              the test column is only printed beside it
For each member also the 95 % interval of its test lwlrap (a bootstrap that resamples the test
recordings, a few per class: ``lwlrap_interval``) and "OOF @ test mix": its OOF lwlrap with the
classes weighted by the test clips' label counts (lwlrap weights classes by their share of labels,
and the splits' mixes differ), so OOF - test splits into what the label mix explains and what new
recordings cost.
Usage: python bench/quality.py [--splits A B] [--recipes models/cpu_*.toml] [--folds N] [--no-curated-only]
Needs ../shared/data/urbansound8k-subset and ../shared/tools/make_fat_layout.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import librosa
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shared_layout import SHARED, interval_over_recordings, write_layout

REPO = Path(__file__).resolve().parents[1]
SPLITS = {"A": [], "B": ["--curated-folds", "2", "--noisy-folds", "1", "--test-folds", "1", "--seed", "8"]}
CPU_RECIPES = sorted((REPO / "models").glob("cpu_*.toml"))


def make_layout(out: Path, split: str = "A") -> Path:
    """The shared subset in the FAT2019 layout for ``split`` (written once), curated clips grouped by recording."""
    return write_layout(out, SPLITS[split])


def clip_features(path: Path, sr: int) -> np.ndarray:
    y, _ = librosa.load(path, sr=sr)
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, hop_length=256, n_mels=64))
    mfcc = librosa.feature.mfcc(S=mel, n_mfcc=20)
    return np.concatenate([mel.mean(1), mel.std(1), mfcc.mean(1), mfcc.std(1)])


def sklearn_peer(data, sr: int) -> float:
    """Test lwlrap of log-mel / MFCC statistics + logistic regression trained on the curated clips."""
    from freesound_tf.metrics import lwlrap

    train, test = data.layout.splits["curated"], data.layout.splits["test"]
    x_train = np.stack([clip_features(p, sr) for p in train.paths()])
    x_test = np.stack([clip_features(p, sr) for p in test.paths()])
    model = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=0.1, max_iter=2000)))
    model.fit(x_train, train.labels)
    return lwlrap(test.labels, model.predict_proba(x_test))


def member_recipe(path: Path, folds: int | None, pretrain: bool):
    from freesound_tf.config import FoldsConfig, load_recipe

    recipe = load_recipe(path)
    train = recipe.train
    if not pretrain:
        train = dataclasses.replace(train, pretrain=dataclasses.replace(train.pretrain, epochs=0))
    n_splits = folds or recipe.folds.n_splits
    # One fold assignment for every member, so their OOF predictions line up for stacking.
    return dataclasses.replace(recipe, name=f"{path.stem}{'' if pretrain else '-curated'}", train=train,
                               folds=FoldsConfig(n_splits=n_splits, seed=42))


def oof_at_test_mix(run_dir: Path) -> float:
    """A member run's OOF lwlrap at the label mix of its test clips (see the module doc)."""
    from freesound_tf.metrics import lwlrap_at_label_mix

    test_counts = np.load(run_dir / "test_labels.npy").sum(axis=0)
    return lwlrap_at_label_mix(np.load(run_dir / "oof_labels.npy"), np.load(run_dir / "oof.npy"), test_counts)


def run_split(split: str, recipes: list[Path], folds: int | None, curated_only: bool, work: Path) -> dict:
    from freesound_tf.data.prepare import prepare_data
    from freesound_tf.stacking import run_stacking
    from freesound_tf.training.member import train_member

    layout = make_layout(work / "data", split)
    rows: dict[str, dict] = {}
    pretrained_runs = []
    data, sample_rate = None, 0
    for path in recipes:
        for pretrain in ([False, True] if curated_only else [True]):
            recipe = member_recipe(path, folds, pretrain)
            data = prepare_data(layout, recipe.audio, work, workers=None, progress=False)
            sample_rate = recipe.audio.sample_rate
            start = time.time()
            result = train_member(recipe, data, work / "runs" / recipe.name, verbose=0)
            label = f"{path.stem}, {'noisy -> curated' if pretrain else 'curated only'}"
            rows[label] = {"oof_lwlrap": result.metrics["oof_lwlrap"], "test_lwlrap": result.metrics["test_lwlrap"],
                           "test_interval": interval_over_recordings(result.run_dir, layout),
                           "oof_at_test_mix": oof_at_test_mix(result.run_dir),
                           "minutes": round((time.time() - start) / 60, 1)}
            print(f"[{split}] {label}: {rows[label]}", flush=True)
            if pretrain:
                pretrained_runs.append(result.run_dir)
    start = time.time()
    rows["sklearn peer (curated only)"] = {"test_lwlrap": sklearn_peer(data, sample_rate),
                                           "minutes": round((time.time() - start) / 60, 1)}
    table = run_stacking(REPO / "stacking" / "cpu.toml", pretrained_runs, work / "stack")
    for row in table["rows"]:
        if row["kind"] != "member":
            rows[f"{row['kind']}: {row['name']}"] = {k: row[k] for k in ("oof_lwlrap", "test_lwlrap")}
    chosen = next(r for r in table["rows"] if r["name"] == table["choice"]["name"])
    rows["final choice: " + chosen["name"]] = {k: chosen[k] for k in ("oof_lwlrap", "test_lwlrap")}
    if chosen["kind"] == "member":
        member_row = next(row for label, row in rows.items() if label.startswith(f"{chosen['name']}, noisy"))
        for key in ("oof_at_test_mix", "test_interval"):
            rows["final choice: " + chosen["name"]][key] = member_row[key]
    return {"rows": rows, "choice": table["choice"], "classes": len(data.layout.classes),
            "curated_clips": len(data.layout.splits["curated"].fnames),
            "test_clips": len(data.layout.splits["test"].fnames)}


def format_split(split: str, result: dict) -> str:
    lines = [f"\nsplit {split}: {result['curated_clips']} curated / {result['test_clips']} test clips, "
             f"{result['classes']} classes",
             f"{'system':52s} {'OOF lwlrap':>11s} {'OOF @ test mix':>15s} {'test lwlrap':>12s} {'95 % interval':>14s} "
             f"{'minutes':>8s}"]
    for label, row in result["rows"].items():
        oof, at_mix = (f"{row[key]:.4f}" if key in row else "-" for key in ("oof_lwlrap", "oof_at_test_mix"))
        interval = "{:.3f}-{:.3f}".format(*row["test_interval"]) if "test_interval" in row else "-"
        minutes = f"{row['minutes']:.1f}" if "minutes" in row else ""
        lines.append(f"{label:52s} {oof:>11s} {at_mix:>15s} {row['test_lwlrap']:12.4f} {interval:>14s} {minutes:>8s}")
    lines.append(f"final choice: {result['choice']['reason']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", choices=sorted(SPLITS), default=sorted(SPLITS))
    parser.add_argument("--recipes", nargs="+", type=Path, default=CPU_RECIPES)
    parser.add_argument("--folds", type=int, default=None, help="curated folds (default: the recipes')")
    parser.add_argument("--no-curated-only", dest="curated_only", action="store_false",
                        help="skip the curated-only rows (halves the time)")
    parser.add_argument("--work", default=str(REPO / "work" / "bench-quality"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "quality.json"))
    args = parser.parse_args()
    if not (SHARED / "data" / "urbansound8k-subset").exists():
        sys.exit(f"{SHARED}/data/urbansound8k-subset not found: this benchmark needs the shared data")

    results = {}
    for split in args.splits:
        results[split] = run_split(split, args.recipes, args.folds, args.curated_only, Path(args.work) / split)
        print(format_split(split, results[split]), flush=True)
    for split, result in results.items():  # every table again, together at the end
        print(format_split(split, result))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
