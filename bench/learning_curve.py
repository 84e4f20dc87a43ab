"""How far more training recordings would carry a recipe on recordings it never heard.

Per split of bench/quality.py (A, B), one recipe trained curated-only, scored on the same test clips, on:
  half     the curated clips of a random half of the curated recordings
  curated  every curated clip (bench/quality.py's "curated only" row)
  pooled   the curated clips and the noisy clips under their true labels (the tool's labels before
           corruption; their recordings are new, none is a test recording): the most any handling
           of the noisy labels could get out of this split's audio
The rows tell whether test lwlrap is limited by the data a split offers rather than by the recipe:
if even "pooled" stays below a target, no noisy-label method reaches it with this recipe.
Usage: python bench/learning_curve.py [--splits A B] [--recipe models/cpu_cnn9.toml] [--sizes half curated pooled]
Needs ../shared/data/urbansound8k-subset and ../shared/tools/make_fat_layout.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from quality import REPO, SPLITS, make_layout, member_recipe
from shared_layout import SHARED, interval_over_recordings, write_pooled_layout, write_subset_layout

SIZES = ("half", "curated", "pooled")


def size_layout(size: str, split: str, work: Path) -> Path:
    base = make_layout(work / "data", split)
    if size == "half":
        return write_subset_layout(work / "data-half", base, share=0.5)
    if size == "pooled":
        return write_pooled_layout(work / "data-pooled", base, SPLITS[split])
    return base


def run_size(size: str, split: str, recipe_path: Path, work: Path) -> dict:
    from freesound_tf.data.prepare import prepare_data
    from freesound_tf.training.member import train_member

    layout = size_layout(size, split, work)
    curated = pd.read_csv(layout / "train_curated.csv", dtype=str, keep_default_na=False)
    recipe = member_recipe(recipe_path, None, pretrain=False)
    out = work / "learning-curve" / size
    data = prepare_data(layout, recipe.audio, out, workers=None, progress=False)
    start = time.time()
    result = train_member(recipe, data, out / "runs" / recipe.name, verbose=0)
    return {"recordings": curated["group"].nunique(), "clips": len(curated),
            "oof_lwlrap": result.metrics["oof_lwlrap"], "test_lwlrap": result.metrics["test_lwlrap"],
            "test_interval": interval_over_recordings(result.run_dir, layout),
            "minutes": round((time.time() - start) / 60, 1)}


def format_split(split: str, recipe: str, rows: dict[str, dict]) -> str:
    lines = [f"\nsplit {split}, {recipe} curated-only",
             f"{'training set':10s} {'recordings':>10s} {'clips':>6s} {'OOF lwlrap':>11s} {'test lwlrap':>12s} "
             f"{'95 % interval':>14s} {'minutes':>8s}"]
    for size, row in rows.items():
        interval = "{:.3f}-{:.3f}".format(*row["test_interval"])
        lines.append(f"{size:10s} {row['recordings']:10d} {row['clips']:6d} {row['oof_lwlrap']:11.4f} "
                     f"{row['test_lwlrap']:12.4f} {interval:>14s} {row['minutes']:8.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", choices=sorted(SPLITS), default=sorted(SPLITS))
    parser.add_argument("--recipe", type=Path, default=REPO / "models" / "cpu_cnn9.toml")
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    parser.add_argument("--work", default=str(REPO / "work" / "bench-quality"),
                        help="shared with bench/quality.py: the split layouts are written once")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "learning_curve.json"))
    args = parser.parse_args()
    if not (SHARED / "data" / "urbansound8k-subset").exists():
        sys.exit(f"{SHARED}/data/urbansound8k-subset not found: this benchmark needs the shared data")

    results = {}
    for split in args.splits:
        results[split] = {}
        for size in args.sizes:
            results[split][size] = run_size(size, split, args.recipe, Path(args.work) / split)
            print(f"[{split}] {size}: {results[split][size]}", flush=True)
        print(format_split(split, args.recipe.stem, results[split]), flush=True)
    for split, rows in results.items():
        print(format_split(split, args.recipe.stem, rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
