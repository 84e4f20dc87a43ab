"""Benchmark on real audio: the shared UrbanSound8K subset in the FAT2019 layout.

Compares, on the same test clips (test lwlrap) in one run:
  sklearn baseline   log-mel + MFCC mean/std per clip -> one-vs-rest logistic regression,
                     trained on the curated split
  curated only       the CPU recipe (models/demo.toml) fine-tuned on curated, no pretraining
  noisy -> curated   the same recipe pretrained on the noisy split first (the reference schedule)

Usage: python bench/urbansound.py [--folds 3] [--out bench/results/urbansound.json]
Needs ../shared/data/urbansound8k-subset and ../shared/tools/make_fat_layout.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import librosa
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def make_layout(out: Path) -> Path:
    if not (out / "sample_submission.csv").exists():
        subprocess.run([sys.executable, str(SHARED / "tools" / "make_fat_layout.py"),
                        str(SHARED / "data" / "urbansound8k-subset"), str(out)], check=True)
    return out


def clip_features(path: Path, sr: int) -> np.ndarray:
    y, _ = librosa.load(path, sr=sr)
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, hop_length=256, n_mels=64))
    mfcc = librosa.feature.mfcc(S=mel, n_mfcc=20)
    return np.concatenate([mel.mean(1), mel.std(1), mfcc.mean(1), mfcc.std(1)])


def sklearn_baseline(data, sr: int) -> float:
    from freesound_tf.metrics import lwlrap

    train, test = data.layout.splits["curated"], data.layout.splits["test"]
    x_train = np.stack([clip_features(p, sr) for p in train.paths()])
    x_test = np.stack([clip_features(p, sr) for p in test.paths()])
    model = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=0.1, max_iter=2000)))
    model.fit(x_train, train.labels)
    return lwlrap(test.labels, model.predict_proba(x_test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(REPO / "work" / "bench-urbansound"))
    parser.add_argument("--folds", type=int, default=3, help="curated folds for fine-tuning (default 3)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "urbansound.json"))
    args = parser.parse_args()
    if not (SHARED / "data" / "urbansound8k-subset").exists():
        sys.exit(f"{SHARED}/data/urbansound8k-subset not found: this benchmark needs the shared data")

    from freesound_tf.config import FoldsConfig, load_recipe
    from freesound_tf.data.prepare import prepare_data
    from freesound_tf.training.member import train_member

    work = Path(args.work)
    layout = make_layout(work / "data")
    recipe = load_recipe(REPO / "models" / "demo.toml")
    recipe = dataclasses.replace(recipe, folds=FoldsConfig(n_splits=args.folds, seed=recipe.folds.seed))
    data = prepare_data(layout, recipe.audio, work, workers=None, progress=False)

    rows = {}
    start = time.time()
    rows["sklearn baseline (curated)"] = {"test_lwlrap": sklearn_baseline(data, recipe.audio.sample_rate),
                                          "seconds": round(time.time() - start)}
    curated_only = dataclasses.replace(
        recipe, name="urban-curated-only",
        train=dataclasses.replace(recipe.train, pretrain=dataclasses.replace(recipe.train.pretrain, epochs=0)))
    for label, member in (("cnn9 demo recipe, curated only", curated_only),
                          ("cnn9 demo recipe, noisy -> curated", dataclasses.replace(recipe, name="urban-pretrained"))):
        start = time.time()
        result = train_member(member, data, work / "runs" / member.name, verbose=0)
        rows[label] = {"test_lwlrap": result.metrics["test_lwlrap"], "oof_lwlrap": result.metrics["oof_lwlrap"],
                       "seconds": round(time.time() - start)}

    print(f"\nUrbanSound8K subset, FAT2019 layout ({len(data.layout.classes)} classes), "
          f"{args.folds}-fold fine-tuning")
    print(f"{'system':40s} {'test lwlrap':>12s} {'OOF lwlrap':>11s} {'seconds':>8s}")
    for label, row in rows.items():
        oof = f"{row['oof_lwlrap']:.4f}" if "oof_lwlrap" in row else "-"
        print(f"{label:40s} {row['test_lwlrap']:12.4f} {oof:>11s} {row['seconds']:8d}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
