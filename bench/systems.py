"""Benchmark: every rebuilt system on real audio, side by side, then one stacker over all of them.

Trains each CPU-sized recipe (cnn9 = models/demo.toml, plus bench/recipes/*_cpu.toml: seed 000's
deep-supervision CNNs, seed 001's XResNet, seed 002's MobileNetV2 + PCA, seed 003's ResNeXt) on
the shared UrbanSound8K subset in the FAT2019 layout with the same curated folds, lists OOF and
test lwlrap per system, then stacks all members (stacking/demo.toml), prints the final choice
(member, blend or stacker, chosen on the OOF matrix alone, as run.sh submits it) and exports that
choice as one SavedModel, scoring the test clips with it in a TensorFlow-only process: the stacker,
the choice and the export accept every system.

Usage: python bench/systems.py [--folds 3] [--epochs-scale 1.0] [--pretrain] [--recipes A.toml ...]
Needs ../shared/data/urbansound8k-subset and ../shared/tools/make_fat_layout.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from quality import SHARED, make_layout  # noqa: E402

DEFAULT_RECIPES = [REPO / "models" / "demo.toml", *sorted((REPO / "bench" / "recipes").glob("*_cpu.toml"))]


def member_recipe(path: Path, folds: int, epochs_scale: float, pretrain: bool):
    from freesound_tf.config import FoldsConfig, load_recipe, scale_epochs

    recipe = scale_epochs(load_recipe(path), epochs_scale)
    train = recipe.train
    if not pretrain:
        train = dataclasses.replace(train, pretrain=dataclasses.replace(train.pretrain, epochs=0))
    # One fold assignment for every member, so their OOF predictions line up for stacking.
    return dataclasses.replace(recipe, name=f"urban-{path.stem}", train=train,
                               folds=FoldsConfig(n_splits=folds, seed=42))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(REPO / "work" / "bench-systems"))
    parser.add_argument("--folds", type=int, default=3, help="curated folds (default 3)")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="scale every recipe's epochs")
    parser.add_argument("--pretrain", action="store_true", help="keep the recipes' noisy pretraining stage")
    parser.add_argument("--recipes", nargs="*", type=Path, default=DEFAULT_RECIPES)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "systems.json"))
    args = parser.parse_args()
    if not (SHARED / "data" / "urbansound8k-subset").exists():
        sys.exit(f"{SHARED}/data/urbansound8k-subset not found: this benchmark needs the shared data")

    from freesound_tf.data.prepare import prepare_data
    from freesound_tf.stacking import run_stacking
    from freesound_tf.training.member import train_member

    work = Path(args.work)
    layout = make_layout(work / "data")
    rows, runs = {}, []
    for path in args.recipes:
        recipe = member_recipe(path, args.folds, args.epochs_scale, args.pretrain)
        data = prepare_data(layout, recipe.audio, work, workers=None, progress=False)
        start = time.time()
        result = train_member(recipe, data, work / "runs" / recipe.name, verbose=0)
        runs.append(result.run_dir)
        rows[f"{path.stem} ({recipe.model.name})"] = {
            "oof_lwlrap": result.metrics["oof_lwlrap"], "test_lwlrap": result.metrics.get("test_lwlrap"),
            "seconds": round(time.time() - start)}
        print(f"{path.stem}: {rows[f'{path.stem} ({recipe.model.name})']}", flush=True)
    table = run_stacking(REPO / "stacking" / "demo.toml", runs, work / "stack")  # prints its own table
    for row in table["rows"]:
        if row["kind"] != "member":
            rows[f"{row['kind']}: {row['name']}"] = row
    rows[f"final choice: {table['choice']['name']}"] = next(
        row for row in table["rows"] if row["name"] == table["choice"]["name"])
    served = export_and_serve(runs, work, layout)

    print(f"\nUrbanSound8K subset, FAT2019 layout, {args.folds}-fold curated CV, epochs x {args.epochs_scale}, "
          f"{'noisy pretraining' if args.pretrain else 'no pretraining'}")
    print(f"{'system':40s} {'OOF lwlrap':>11s} {'test lwlrap':>12s} {'seconds':>8s}")
    for label, row in rows.items():
        test = f"{row['test_lwlrap']:.4f}" if row.get("test_lwlrap") is not None else "-"
        print(f"{label:40s} {row['oof_lwlrap']:11.4f} {test:>12s} {row.get('seconds', 0):8d}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    print(f"final choice: {table['choice']['reason']}")
    print(f"the final choice as a SavedModel: test lwlrap {served['test_lwlrap']:.4f} on "
          f"{served['clips']} clips scored in a TensorFlow-only process -> {served['saved_model']}")
    Path(args.out).write_text(json.dumps({"members": rows, "stack_table": table, "export": served}, indent=1))


_SERVE = """
import json, sys
import numpy as np, soundfile as sf, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
scores = [serve(waveform=tf.constant(sf.read(p, dtype="float32")[0][None, :]))["scores"].numpy()[0]
          for p in sys.argv[2:]]
print(json.dumps(np.asarray(scores).tolist()))
"""


def export_and_serve(runs: list[Path], work: Path, layout: Path) -> dict:
    """Export the ensemble the stack step chose; score the test clips with TensorFlow alone."""
    import subprocess

    import numpy as np

    from freesound_tf.data.layout import load_layout
    from freesound_tf.export import export_run
    from freesound_tf.metrics import lwlrap

    saved = export_run(runs, work / "export", work / "stack")
    test = load_layout(layout).splits["test"]
    done = subprocess.run([sys.executable, "-c", _SERVE, str(saved), *map(str, test.paths())],
                          capture_output=True, text=True, check=True)
    scores = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"saved_model": str(saved), "clips": len(scores), "test_lwlrap": lwlrap(test.labels, scores)}


if __name__ == "__main__":
    main()
