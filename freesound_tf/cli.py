"""`freesound-tf` command line: one sub-command per pipeline step.

Heavy imports (TensorFlow) happen inside each command, so `--help` answers at once.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from freesound_tf.config import ConfigError, Recipe, load_recipe
from freesound_tf.locking import InUseError


def _recipe(path: str | None) -> Recipe:
    return load_recipe(path) if path else Recipe()


def cmd_demo_data(args: argparse.Namespace) -> None:
    from freesound_tf.data.demo import make_demo_dataset

    if bool(args.out) == bool(args.folder):
        raise ValueError("demo-data: pass the folder once, as --out DIR")
    out = make_demo_dataset(args.out or args.folder, seed=args.seed, sample_rate=args.sample_rate,
                            n_curated=args.n_curated, n_noisy=args.n_noisy, n_test=args.n_test)
    print(f"demo data set ready in {out}")


def cmd_prepare(args: argparse.Namespace) -> None:
    from freesound_tf.data.prepare import prepare_data, write_folds, write_summary

    recipe = _recipe(args.recipe)
    work = Path(args.work)
    data = prepare_data(args.input, recipe.audio, work, workers=args.workers, progress=not args.quiet,
                        noisy_csv=args.noisy_csv, pipeline=recipe.pipeline, augment=recipe.augment)
    write_folds(data, recipe.folds, work / "folds.csv")
    summary = write_summary(data, work / "prepare.json")
    print(f"{summary['layout']} data in {summary['input']}: {summary['classes']} classes")
    for name, split in summary["splits"].items():
        listed = f" (listed in {split['report']})" if split["skipped"] else ""
        print(f"  {name:8s} {split['cached']:6d} clips cached, {split['skipped']} skipped{listed} -> {split['cache']}")
    print(f"class map, folds ({recipe.folds.n_splits}) and summary written to {work}")


def cmd_train(args: argparse.Namespace) -> None:
    from freesound_tf.config import scale_epochs
    from freesound_tf.data.prepare import prepare_data
    from freesound_tf.models import check_model_config
    from freesound_tf.training.distribute import make_distribution
    from freesound_tf.training.member import member_run_dir, train_member
    from freesound_tf.training.run_folder import lock_run_folder

    recipe = scale_epochs(load_recipe(args.recipe), args.epochs_scale)
    if args.strategy:
        recipe = replace(recipe, train=replace(recipe.train, strategy=args.strategy))
    if args.n_splits is not None:
        if args.n_splits < 2:
            raise ConfigError(f"--n-splits {args.n_splits}: k-fold training needs at least 2 folds")
        recipe = replace(recipe, folds=replace(recipe.folds, n_splits=args.n_splits))
    if args.folds is not None:
        recipe = replace(recipe, train=replace(recipe.train, folds_to_run=_fold_list(args.folds,
                                                                                     recipe.folds.n_splits)))
    # First TensorFlow work of the process: the multi-worker strategy must exist before any other op.
    distribution = make_distribution(recipe.train.strategy)
    try:  # an unknown model or variant fails now, naming the recipe, not after the data is cached
        check_model_config(recipe.model)
    except ConfigError as err:
        raise ConfigError(f"{args.recipe}: {err}") from None
    run_dir = Path(args.run_dir) if args.run_dir else Path(args.runs) / recipe.name
    with lock_run_folder(member_run_dir(run_dir, distribution)):  # refuse a run folder in use before any work
        data = prepare_data(args.input, recipe.audio, Path(args.work), workers=args.workers,
                            progress=not args.quiet, noisy_csv=args.noisy_csv, pipeline=recipe.pipeline,
                            augment=recipe.augment)
        train_member(recipe, data, run_dir, verbose=0 if args.quiet else 1, distribution=distribution)


def _fold_list(text: str, n_splits: int) -> tuple[int, ...]:
    """``--folds 0,2`` -> (0, 2), checked against the number of folds before any work."""
    try:
        folds = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise ConfigError(f"--folds {text!r}: expected comma-separated fold numbers such as 0,1,2") from None
    if len(set(folds)) != len(folds):
        raise ConfigError(f"--folds {text!r}: a fold is listed twice")
    if not all(0 <= k < n_splits for k in folds):
        raise ConfigError(f"--folds {text!r}: folds are numbered 0..{n_splits - 1} ({n_splits} folds); "
                          "pick from those or change --n-splits")
    return folds


def cmd_predict(args: argparse.Namespace) -> None:
    if bool(args.run) == bool(args.saved_model):
        raise ValueError("predict: pass either --run RUN or --saved-model DIR")
    if args.saved_model:
        return _predict_with_saved_model(args)
    from freesound_tf.data.cache import describe_clips
    from freesound_tf.fallback import write_fallback_csv
    from freesound_tf.inference import predict_folder, write_submission

    out = Path(args.out)
    if not out.parent.is_dir():  # checked before the scoring, not after it
        raise FileNotFoundError(f"--out {out}: folder {out.parent} does not exist; create it or pass another path")
    run, fnames, scores, skipped = predict_folder(args.run, args.audio_dir, args.work, workers=args.workers,
                                                  progress=not args.quiet)
    write_submission(out, fnames, scores, run.classes.names, run.multilabel)
    print(f"{len(fnames)} clips scored with {len(run.fold_models)} fold model(s) of {run.run_dir} -> {out}")
    fallback_csv = out.with_name(f"{out.stem}.fallback.csv")
    fallback_csv.unlink(missing_ok=True)  # never leave the list of an earlier prediction beside this one
    if skipped:
        write_fallback_csv(fallback_csv, skipped)
        print(f"{len(skipped)} unreadable clip(s) scored with the class priors: {describe_clips(skipped)}; "
              f"list: {fallback_csv}")


def _predict_with_saved_model(args: argparse.Namespace) -> None:
    from freesound_tf.inference import FolderTable
    from freesound_tf.tagging import SavedModelScorer, score_folder, write_complete_submission

    out = Path(args.out)
    if not out.parent.is_dir():  # checked before the scoring, not after it
        raise FileNotFoundError(f"--out {out}: folder {out.parent} does not exist; create it or pass another path")
    scorer = SavedModelScorer(args.saved_model)
    result = score_folder(scorer, args.audio_dir, scorer.sample_rate)
    if not result.fnames:
        raise ValueError(f"--audio-dir {args.audio_dir}: no clip could be decoded; check the folder and its files")
    fallback = write_complete_submission(out, FolderTable.scan(args.audio_dir).fnames, result, scorer, args.audio_dir)
    print(f"{len(result.fnames)} clips scored with {scorer.path} -> {out}"
          + (f"; {len(fallback)} unreadable clip(s) scored with the class priors" if fallback else ""))


def cmd_tag(args: argparse.Namespace) -> int:
    """Top-k labels per file from a SavedModel or a run folder; unreadable files are reported and skipped."""
    import json

    from freesound_tf.data.audio import AudioDecodeError, load_audio
    from freesound_tf.tagging import SavedModelScorer, top_k

    if bool(args.run) == bool(args.saved_model):
        raise ValueError("tag: pass either --saved-model DIR or --run RUN")
    if args.saved_model:
        scorer = SavedModelScorer(args.saved_model)
        sample_rate = scorer.sample_rate
    else:
        from freesound_tf.training.run_folder import load_run

        scorer = load_run(args.run)
        sample_rate = scorer.recipe.audio.sample_rate
    files, clips, failed = [], [], 0
    for path in args.files:
        try:
            clips.append(load_audio(path, sample_rate))
            files.append(path)
        except AudioDecodeError as err:
            print(f"freesound-tf tag: {err}", file=sys.stderr)
            failed += 1
    tags = top_k(scorer.predict(clips, sample_rate), scorer.class_names, args.top_k) if clips else []
    if args.json:
        print(json.dumps([{"file": f, "tags": [{"label": label, "score": round(score, 6)} for label, score in t]}
                          for f, t in zip(files, tags)], indent=1))
    else:
        for path, best in zip(files, tags):
            print(path)
            for label, score in best:
                print(f"  {score:.3f}  {label}")
    return 1 if failed else 0


def cmd_kaggle_bundle(args: argparse.Namespace) -> None:
    from freesound_tf.kaggle import make_bundle

    out = make_bundle([Path(r) for r in args.runs or []], Path(args.out), Path(args.stack) if args.stack else None,
                      saved_model=Path(args.saved_model) if args.saved_model else None, wheels=not args.no_wheels,
                      find_links=Path(args.find_links) if args.find_links else None,
                      extra_wheels=tuple(args.wheel_for), trim=not args.no_trim)
    print(f"Kaggle bundle written to {out}: upload the folder as a dataset, then in the notebook run\n"
          f"  !python /kaggle/input/<dataset>/kaggle_infer.py")


def cmd_relabel(args: argparse.Namespace) -> None:
    import pandas as pd

    from freesound_tf.data.layout import detect_layout, load_layout
    from freesound_tf.relabel import parse_strategy, read_predictions, relabel, relabel_summary, write_noisy_csv

    parse_strategy(args.strategy)  # fail before any prediction work
    if args.audio_dir and not args.run:
        raise ValueError("--audio-dir: only used with --run (to predict the noisy clips); drop it or pass --run")
    if detect_layout(args.input) != "fat2019":
        raise ValueError(f"{args.input}: relabel needs the FAT2019 layout (train_noisy.csv); FAT2018 has no noisy split")
    noisy_csv = Path(args.noisy_csv or Path(args.input) / "train_noisy.csv")
    if Path(args.out).resolve() == noisy_csv.resolve():
        raise ValueError(f"--out {args.out}: would overwrite the noisy CSV it reads (each round relabels the "
                         "original labels); write to another file")
    # Checks the noisy CSV against the layout's classes with line-numbered errors; no audio is read.
    layout = load_layout(args.input, check_files=False, noisy_csv=noisy_csv)
    noisy = pd.read_csv(noisy_csv, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    noisy = noisy.apply(lambda col: col.str.strip())
    noisy = noisy[(noisy != "").any(axis=1)]
    if args.predictions:
        predictions, source = read_predictions(args.predictions), args.predictions
    else:
        from freesound_tf.inference import predict_folder

        audio_dir = args.audio_dir or layout.splits["noisy"].audio_dir
        run, fnames, scores, skipped = predict_folder(args.run, audio_dir, args.work, workers=args.workers,
                                                      progress=not args.quiet)
        predictions = pd.DataFrame(scores, columns=list(run.classes.names))
        predictions.insert(0, "fname", fnames)
        source = f"predictions of {args.run} on {audio_dir}"
        unreadable = noisy["fname"].isin({fname for fname, _ in skipped})
        if unreadable.any():  # they cannot be trained on either
            print(f"{int(unreadable.sum())} unreadable noisy clip(s) left out")
            noisy = noisy[~unreadable]
    new = relabel(noisy, predictions, args.strategy, layout.classes, args.threshold, noisy_source=str(noisy_csv),
                  predictions_source=str(source))
    write_noisy_csv(new, args.out)
    s = relabel_summary(noisy, new)
    print(f"{args.strategy}: kept {s['kept']} of {s['clips']} noisy clips ({s['dropped']} dropped); labels changed "
          f"on {s['changed']} kept clip(s) (+{s['labels_added']} / -{s['labels_removed']} labels) -> {args.out}")
    print(f"pretrain on it with: freesound-tf train --recipe R.toml --input {args.input} --noisy-csv {args.out} "
          "--run-dir runs/NEW_NAME")


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from freesound_tf.evaluate import evaluate_submission, format_report

    result = evaluate_submission(args.submission, args.truth)
    print(format_report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


def cmd_stack(args: argparse.Namespace) -> None:
    from freesound_tf.stacking import run_stacking

    verbose = 2 if args.verbose and not args.quiet else 0  # one line per stacker epoch with -v
    if args.fit_verbose is not None:  # deprecated spelling
        verbose = args.fit_verbose
    run_stacking(args.recipe, [Path(r) for r in args.runs], Path(args.out), verbose=verbose)


def cmd_export(args: argparse.Namespace) -> None:
    from freesound_tf.export import convert_tflite, export_run

    out = Path(args.out)
    path = export_run([Path(r) for r in args.runs or []], out, Path(args.stack) if args.stack else None,
                      fixed_samples=args.tflite_samples, trim=not args.no_trim)
    print(f"SavedModel written to {path} (serving_default: waveform [batch, samples] -> scores [batch, classes]; "
          "padded: + lengths; metadata: labels, sample_rate)")
    if args.tflite or args.tflite_samples:
        tflite = convert_tflite(path, out / "model.tflite", select_tf_ops=args.tflite_select_ops)
        print(f"TFLite model written to {tflite}")


def cmd_models(args: argparse.Namespace) -> None:
    from freesound_tf.models import model_summary_rows

    rows = model_summary_rows(args.seconds, args.sample_rate, args.classes)
    print(f"{'model':28s} {'params':>12s} {'GFLOPs/clip':>12s}   ({args.seconds:g} s at {args.sample_rate} Hz, "
          f"{args.classes} classes)")
    for row in rows:
        print(f"{row['name']:28s} {row['params']:12,d} {row['flops'] / 1e9:12.2f}")


def _add_decoding_options(parser: argparse.ArgumentParser, work_help: str) -> None:
    parser.add_argument("--work", default="work", help=f"{work_help} (default work/)")
    parser.add_argument("--workers", type=int, help="decoding processes for the cache (default: all cores)")


def _add_input_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", default="input", help="data folder in the FAT2019 or FAT2018 layout (default input/)")


def _add_noisy_csv_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--noisy-csv", help="noisy-split labels to use instead of INPUT/train_noisy.csv, e.g. written "
                                            "by `freesound-tf relabel` (audio stays in INPUT/train_noisy/)")


def _add_common_options(parser: argparse.ArgumentParser, default) -> None:
    """-v and --quiet, accepted before or after the sub-command (defaults only at the top level)."""
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log debug messages, show tracebacks and per-epoch output")
    parser.add_argument("--quiet", action="store_true", default=default, help="no progress bars or per-epoch output")


def build_parser() -> argparse.ArgumentParser:
    from freesound_tf import __version__

    parser = argparse.ArgumentParser(prog="freesound-tf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"freesound-tf {__version__}")
    _add_common_options(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo-data", help="synthesize the built-in demo set (FAT2019 layout)",
                          description="Write a small, deterministic, procedurally synthesized data set in the "
                                      "FAT2019 layout (curated, noisy with corrupted labels, test + truth).")
    demo.add_argument("--out", help="folder to write the data set into (reused if already complete)")
    demo.add_argument("folder", nargs="?", help=argparse.SUPPRESS)  # deprecated spelling of --out
    demo.add_argument("--seed", type=int, default=0, help="random seed; same seed gives identical files (default 0)")
    demo.add_argument("--sample-rate", type=int, default=16000, help="sample rate of the WAV files (default 16000)")
    demo.add_argument("--n-curated", type=int, default=240, help="curated clips (default 240)")
    demo.add_argument("--n-noisy", type=int, default=360, help="noisy clips, ~30%% with corrupted labels (default 360)")
    demo.add_argument("--n-test", type=int, default=120, help="test clips, with test_truth.csv (default 120)")
    demo.set_defaults(func=cmd_demo_data)

    prep = sub.add_parser("prepare", help="validate data, build waveform caches, class map and folds",
                          description="Check the CSVs and audio folder (fails before any heavy work on bad "
                                      "input), decode every clip into an HDF5 waveform cache (parallel, "
                                      "resumable, reused when the audio settings are unchanged), and write "
                                      "classes.json, folds.csv and prepare.json into the work folder.")
    _add_input_option(prep)
    _add_noisy_csv_option(prep)
    prep.add_argument("--recipe", help="recipe TOML or packaged name (e.g. se) whose [audio] and [folds] settings "
                                       "to use (default: built-in)")
    _add_decoding_options(prep, "work folder for caches, class map and folds")
    prep.set_defaults(func=cmd_prepare)

    train = sub.add_parser("train", help="train one recipe: noisy pretraining, then k-fold curated fine-tuning",
                           description="Train the member described by a recipe TOML: validate and cache the "
                                       "data, pretrain on the noisy split (validated on curated), fine-tune one "
                                       "model per fold on the curated split, and write out-of-fold and test "
                                       "predictions, metrics, history, TensorBoard logs and plots into the run "
                                       "folder. Rerunning the same command resumes: finished folds are skipped, "
                                       "an unfinished one continues from its last epoch.")
    train.add_argument("--recipe", required=True, help="recipe TOML, or the name of a packaged one (models/*.toml, "
                                                       "e.g. se)")
    _add_input_option(train)
    _add_noisy_csv_option(train)
    _add_decoding_options(train, "work folder holding the waveform caches")
    train.add_argument("--runs", default="runs", help="parent of run folders (default runs/); the run is runs/<recipe name>")
    train.add_argument("--run-dir", help="exact run folder (overrides --runs)")
    train.add_argument("--epochs-scale", type=float, default=1.0,
                       help="multiply every epoch count and milestone of the recipe (e.g. 0.1 for a quick run)")
    train.add_argument("--n-splits", type=int, help="number of curated folds (default: the recipe's [folds] n_splits)")
    train.add_argument("--folds", help="comma-separated folds to run (default: the recipe's, or all)")
    train.add_argument("--strategy", choices=("default", "mirrored", "multi_worker"),
                       help="tf.distribute strategy (default: the recipe's train.strategy): mirrored = every GPU "
                            "of this machine; multi_worker = one process per machine, cluster from TF_CONFIG")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="score a folder of clips with a trained run, write a Kaggle CSV",
                             description="Decode every audio file of a folder (any length, sample rate and "
                                         "channel count), average the scores of the run's fold models with the "
                                         "run's test-time augmentation, and write a Kaggle submission with a row "
                                         "per file: FAT2019 runs write fname + one score column per class, FAT2018 "
                                         "runs write fname + the top 3 labels. Files that cannot be decoded get "
                                         "the run's class priors and are listed beside OUT in <name>.fallback.csv.")
    predict.add_argument("--run", help="run folder written by `freesound-tf train`")
    predict.add_argument("--saved-model", help="instead of --run: a model written by `freesound-tf export` (the "
                                               "base path or one version folder); decodes clips in-process")
    predict.add_argument("--audio-dir", required=True, help="folder of clips to score")
    predict.add_argument("--out", default="submission.csv", help="CSV to write (default submission.csv)")
    _add_decoding_options(predict, "work folder for the decoded-clip cache")
    predict.set_defaults(func=cmd_predict)

    rel = sub.add_parser("relabel", help="pseudo-label the noisy split with a model's predictions, write a new noisy CSV",
                         description="Seed 000's iterative relabelling: score the noisy clips with a run trained on "
                                     "the curated clips, then scoring_K keeps the K clips whose given labels agree "
                                     "best with the scores (per-clip label-ranking average precision) with their "
                                     "given labels, and relabelall replaces every clip's labels by the classes "
                                     "scored >= --threshold and drops clips with none. Writes fname,labels like "
                                     "train_noisy.csv; pass it to `prepare`/`train` with --noisy-csv.")
    _add_input_option(rel)
    rel.add_argument("--noisy-csv", help="noisy labels to relabel (default INPUT/train_noisy.csv)")
    scores = rel.add_mutually_exclusive_group(required=True)
    scores.add_argument("--predictions", help="probability CSV of the noisy clips, as `freesound-tf predict` writes")
    scores.add_argument("--run", help="run folder: predict the noisy clips with it first")
    rel.add_argument("--audio-dir", help="with --run: folder of noisy clips to score (default INPUT/train_noisy)")
    rel.add_argument("--strategy", required=True, help="scoring_K (e.g. scoring_1000) or relabelall")
    rel.add_argument("--threshold", type=float, default=0.5, help="relabelall: lowest score that makes a label "
                                                                  "(default 0.5)")
    rel.add_argument("--out", required=True, help="new noisy CSV to write")
    _add_decoding_options(rel, "with --run: work folder for the decoded-clip cache")
    rel.set_defaults(func=cmd_relabel)

    evaluate = sub.add_parser("evaluate", help="score a submission CSV against a truth CSV",
                              description="Compare a Kaggle-format submission with a truth CSV (fname,labels "
                                          "for FAT2019 or fname,label for FAT2018): prints lwlrap, MAP@3 "
                                          "(single-label truth) and the per-class lwlrap table, worst first.")
    evaluate.add_argument("--submission", required=True, help="submission CSV to score")
    evaluate.add_argument("--truth", required=True, help="truth CSV, e.g. test_truth.csv")
    evaluate.add_argument("--json", help="also write the scores as JSON to this path")
    evaluate.set_defaults(func=cmd_evaluate)

    stack = sub.add_parser("stack", help="blend and stack member runs: table, submission, stacker models",
                           description="Score every member and four blends (mean, weighted mean, geometric "
                                       "mean, rank mean) on the members' out-of-fold predictions, train the "
                                       "k-fold stacker on them (its own OOF comes from stacker folds it did not "
                                       "train on), print and write the table (table.json), the stacked "
                                       "submission.csv and stack.json for `freesound-tf export --stack`.")
    stack.add_argument("--recipe", default="lc1d", help="stacker recipe TOML or packaged name (default lc1d: "
                                                         "stacking/lc1d.toml)")
    stack.add_argument("--runs", "--run", nargs="+", required=True, metavar="RUN", dest="runs",
                       help="finished member run folders")
    stack.add_argument("--out", default="runs/stack", help="output folder (default runs/stack)")
    stack.add_argument("--fit-verbose", type=int, choices=(0, 1, 2), help=argparse.SUPPRESS)  # deprecated: use -v
    stack.set_defaults(func=cmd_stack)

    export = sub.add_parser("export", help="one SavedModel (TF Serving) for a member, an ensemble or a stack",
                            description="Write a SavedModel whose serving_default signature takes raw mono "
                                        "float32 audio `waveform` [batch, samples] (one clip per row, any length, "
                                        "at the members' sample rate) and returns `scores` [batch, classes]; the "
                                        "`padded` signature also takes `lengths` [batch] for clips of different "
                                        "lengths in one batch, `metadata` returns the labels and sample rate. "
                                        "Silence trimming, global features, length, test-time crops, the mean "
                                        "over fold models and the blend of members (the stacker with --stack, "
                                        "else the plain mean) all run inside the graph; loading needs only "
                                        "TensorFlow. Each export is a new version folder OUT/1, OUT/2, ... "
                                        "(TF Serving's model base path).")
    export.add_argument("--runs", "--run", nargs="+", metavar="RUN", dest="runs",
                        help="member run folders (optional with --stack, which names its members)")
    export.add_argument("--stack", help="stack folder written by `freesound-tf stack`")
    export.add_argument("--out", required=True, help="model base path (the SavedModel goes to OUT/<next version>)")
    export.add_argument("--no-trim", action="store_true", help="do not trim silence in the graph (clients trim)")
    export.add_argument("--tflite", action="store_true", help="also convert to OUT/model.tflite")
    export.add_argument("--tflite-samples", type=int, metavar="N",
                        help="export a fixed-length model (input [1, N]) that converts to TFLite builtins")
    export.add_argument("--tflite-select-ops", action="store_true",
                        help="convert with TF Select ops (needs the Flex delegate at run time)")
    export.set_defaults(func=cmd_export)

    models = sub.add_parser("models", help="list registered models with parameters and FLOPs",
                            description="Build every registered model variant and print its parameter count "
                                        "and forward FLOPs for one clip of the given length.")
    models.add_argument("--seconds", type=float, default=5.0, help="input clip length in seconds (default 5)")
    models.add_argument("--sample-rate", type=int, default=44100, help="input sample rate (default 44100)")
    models.add_argument("--classes", type=int, default=80, help="number of output classes (default 80)")
    models.set_defaults(func=cmd_models)

    tag = sub.add_parser("tag", help="top-k labels of audio files, from a SavedModel or a run folder",
                         description="Decode each file (any format, rate or channel count), score it and print its "
                                     "best labels with their scores. With --saved-model only TensorFlow runs the "
                                     "model; with --run the fold models and test-time augmentation of the run.")
    tag.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    tag.add_argument("--saved-model", help="model written by `freesound-tf export` (base path or version folder)")
    tag.add_argument("--run", help="run folder written by `freesound-tf train`")
    tag.add_argument("--top-k", type=int, default=5, help="labels per file (default 5)")
    tag.add_argument("--json", action="store_true", help="print JSON instead of text")
    tag.set_defaults(func=cmd_tag)

    bundle = sub.add_parser("kaggle-bundle", help="a folder to upload as a Kaggle dataset for offline notebooks",
                            description="Export the runs (or stack) as a SavedModel and write it with the wheels a "
                                        "Kaggle image lacks (freesound-tf and its pure-Python dependencies, "
                                        "downloaded now) and kaggle_infer.py, which installs them with pip "
                                        "--no-index and writes submission.csv with a row for every test clip.")
    bundle.add_argument("--runs", "--run", nargs="+", metavar="RUN", dest="runs",
                        help="member run folders (optional with --stack)")
    bundle.add_argument("--stack", help="stack folder written by `freesound-tf stack`")
    bundle.add_argument("--saved-model", help="instead of --runs/--stack: an existing `freesound-tf export`")
    bundle.add_argument("--out", required=True, help="new folder for the bundle")
    bundle.add_argument("--no-trim", action="store_true", help="do not trim silence in the graph")
    bundle.add_argument("--no-wheels", action="store_true", help="leave out the wheels (no network needed)")
    bundle.add_argument("--find-links", help="folder of wheels to use before PyPI when collecting them")
    bundle.add_argument("--wheel-for", action="append", default=[], metavar="PACKAGE",
                        help="also bundle this installed package's wheel (repeatable)")
    bundle.set_defaults(func=cmd_kaggle_bundle)

    for command in sub.choices.values():
        _add_common_options(command, default=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, FileExistsError, InUseError) as err:  # ConfigError, DataValidationError too
        # Input problems end with one line naming the file and the fix; --verbose shows the traceback.
        if args.verbose:
            raise
        print(f"freesound-tf {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
