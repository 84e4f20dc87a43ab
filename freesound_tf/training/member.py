"""Train one ensemble member: noisy pretraining, then k-fold fine-tuning on the curated split.

Out-of-fold (OOF) predictions of a clip come only from the fold model that held it out; test
predictions are the mean over fold models. Each finished fold is recorded, so a rerun skips it, and
the run's OOF and test files cover every finished fold (folds may be trained by separate invocations).
Test clips that cannot be decoded get the class priors (see ``freesound_tf.fallback``), so
``test.csv`` has a row for every ``sample_submission.csv`` fname. The run folder is locked while a
process trains it.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from freesound_tf.calibration import apply_temperature, calibrate
from freesound_tf.config import ConfigError, Recipe, StageConfig
from freesound_tf.data.cache import WaveformCache
from freesound_tf.data.folds import load_folds, make_folds, save_folds
from freesound_tf.data.graph_pipeline import make_train_input
from freesound_tf.data.pipeline import CacheReader, TrainInput, eval_dataset
from freesound_tf.data.prepare import PreparedData
from freesound_tf.fallback import FALLBACK_FILE, warn_fallback, write_fallback_csv
from freesound_tf.inference import model_inputs, predict_clips
from freesound_tf.layers.flip_views import has_flip_views
from freesound_tf.locking import atomic_path, write_text_atomic
from freesound_tf.losses import recipe_loss
from freesound_tf.metrics import lwlrap, map_at_k, per_class_lwlrap
from freesound_tf.models import build_model
from freesound_tf.training.adapt import adapt_model, adaptable_layers
from freesound_tf.training.distribute import Distribution, make_distribution
from freesound_tf.training.init_weights import initialise_from_run, source_checkpoint
from freesound_tf.training.noisy_folds import NoisyClips, open_noisy_clips
from freesound_tf.training.optimizers import make_optimizer
from freesound_tf.training.plots import plot_learning_curves, plot_per_class
from freesound_tf.training.precision import dtype_policy, loss_scaled
from freesound_tf.training.retrain import RETRAINED, retrain_on_validation
from freesound_tf.training.run_folder import (
    lock_run_folder, open_run_folder, read_priors, write_priors, write_run_info, write_task,
)
from freesound_tf.training.stage import fit_stage

log = logging.getLogger(__name__)


@dataclass
class MemberResult:
    run_dir: Path
    oof: np.ndarray  # (n_train_clips, C); NaN rows for folds not run
    test: np.ndarray | None  # (n_test_clips, C) mean over fold models
    metrics: dict


def member_run_dir(run_dir: str | Path, distribution: Distribution) -> Path:
    """The folder this process writes: every worker runs the same steps; only the chief's go to the run
    folder, the others write a scratch copy inside it (removed when the member finishes) and read
    their own on resume."""
    run_dir = Path(run_dir)
    return run_dir if distribution.is_chief else run_dir / f".worker{distribution.worker_index}"


class MemberTrainer:
    """Everything one member's training needs, shared by its stages and folds."""

    def __init__(self, recipe: Recipe, data: PreparedData, run_dir: Path, verbose: int = 1,
                 distribution: Distribution | None = None) -> None:
        self.recipe, self.data, self.verbose = recipe, data, verbose
        self.distribution = distribution or make_distribution(recipe.train.strategy)
        self.run_dir = member_run_dir(run_dir, self.distribution)
        # A relative init_from lies beside the chief's run folder (the workers' scratch copies are inside it).
        self.init_source = init_source(recipe, Path(run_dir))
        self.inputs = model_inputs(recipe)
        self.classes = list(data.layout.classes.names)
        self.multilabel = data.layout.multilabel
        # Seed 002's random batch lengths also need a model that takes any length.
        p = recipe.pipeline
        self.variable_length = (recipe.train.tta in ("full", "multi_length") or p.crop_mode == "whole"
                                or bool(p.random_length_percentiles or p.random_length_seconds))

    # -- building blocks -------------------------------------------------------------------
    def make_model(self) -> keras.Model:
        # Layers keep the policy they were built with (also through .keras), so it is set only here.
        with dtype_policy(self.recipe.train.precision):
            return build_model(self.recipe, len(self.classes), self.multilabel, self.variable_length)

    def compile_model(self, model: keras.Model, lr: float) -> None:
        train = self.recipe.train
        optimizer = loss_scaled(make_optimizer(train, lr), train.precision)
        model.compile(optimizer=optimizer, loss=recipe_loss(train, has_flip_views(model)),
                      jit_compile=train.jit_compile)

    def initialise(self, model: keras.Model, stage_name: str) -> keras.Model:
        """A freshly built model, started from a stage of ``train.init_from`` when the recipe says so
        (the same stage, or its pretraining: ``train.init_from_stage``)."""
        if self.init_source is not None:
            source_stage = "pretrain" if self.recipe.train.init_from_stage == "pretrain" else stage_name
            initialise_from_run(model, self.init_source, source_stage)
        return model

    def adapt(self, model: keras.Model, cache: WaveformCache, rows: np.ndarray) -> keras.Model:
        """Fit the model's fixed data-dependent layers (seed 002's PCA) on this stage's training clips only;
        loaded checkpoints carry theirs."""
        if adaptable_layers(model):
            p = self.recipe.pipeline
            adapt_model(model, eval_dataset(cache, rows, p.crop_seconds, self.recipe.audio.sample_rate,
                                            p.batch_size, n_crops=1, inputs=self.inputs))
        return model

    def predict(self, model: keras.Model, cache: WaveformCache, indices: np.ndarray) -> np.ndarray:
        return predict_clips(model, cache, indices, self.recipe)

    def train_input(self, cache: CacheReader, labels: np.ndarray, indices: np.ndarray,
                    stage: StageConfig) -> TrainInput:
        return make_train_input(cache, labels, self.recipe.pipeline, self.recipe.audio.sample_rate, indices,
                                inputs=self.inputs, augment=self.recipe.augment, steps_per_epoch=stage.steps_per_epoch)

    # -- the two stages ----------------------------------------------------------------------
    def pretrain(self, curated: WaveformCache, curated_labels: np.ndarray) -> Path | None:
        """Stage 1 on the noisy split, validated on the curated clips. None when skipped."""
        stage = self.recipe.train.pretrain
        if stage.epochs == 0 or "noisy" not in self.data.splits:
            return None
        noisy_split = self.data.splits["noisy"]
        with noisy_split.open() as noisy:
            # The noisy cache may hold more clips than a relabelled noisy CSV lists: train on the listed ones.
            noisy_labels = noisy_split.labels(noisy, allow_extra=True)
            every = np.arange(len(curated))
            best = fit_stage(
                lambda: self.adapt(self.initialise(self.make_model(), "pretrain"), noisy, noisy_split.rows(noisy)),
                self.compile_model, stage,
                self.run_dir / "pretrain",
                self.train_input(noisy, noisy_labels, noisy_split.rows(noisy), stage),
                lambda m: self.predict(m, curated, every), curated_labels,
                self.run_dir / "tensorboard" / "pretrain", self.verbose,
                predict_train=lambda m, rows: self.predict(m, noisy, rows), distribution=self.distribution)
        return best

    def finetune_fold(self, k: int, folds: np.ndarray, curated: WaveformCache, labels: np.ndarray,
                      test: WaveformCache | None, pretrained: Path | None, noisy: NoisyClips | None = None) -> dict:
        """Stage 2 for fold ``k``: train on the other folds (plus ``noisy``'s clips for this fold), score
        fold ``k`` and the test clips."""
        fold_dir = self.run_dir / f"fold{k}"
        done = fold_dir / "done.json"
        if done.exists():
            return json.loads(done.read_text())
        stage = self.recipe.train.finetune
        train_idx, val_idx = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        assert not set(train_idx) & set(val_idx)
        if pretrained:
            make = lambda: keras.models.load_model(pretrained, compile=False)  # noqa: E731
        else:
            make = lambda: self.adapt(self.initialise(self.make_model(), f"fold{k}"), curated, train_idx)  # noqa: E731
        # Seed 000: noisy clips join the training clips only; validation, OOF and best-epoch choice stay curated.
        train_cache, train_labels, train_rows = curated, labels, train_idx
        if noisy is not None:
            train_cache, train_labels, train_rows = noisy.joined_with(curated, labels, train_idx, k)
        started = time.time()
        best_path = fit_stage(
            make, self.compile_model, stage, fold_dir,
            self.train_input(train_cache, train_labels, train_rows, stage),
            lambda m: self.predict(m, curated, val_idx), labels[val_idx],
            self.run_dir / "tensorboard" / f"fold{k}", self.verbose,
            predict_train=lambda m, rows: self.predict(m, train_cache, rows), distribution=self.distribution)
        best = keras.models.load_model(best_path, compile=False)
        oof = self.predict(best, curated, val_idx)
        np.save(fold_dir / "oof.npy", oof)
        # The fnames each fold model trained on: the leak check and a human can verify OOF honesty.
        (fold_dir / "train_fnames.txt").write_text("\n".join(train_cache.fnames[i] for i in train_rows) + "\n")
        (fold_dir / "val_fnames.txt").write_text("\n".join(curated.fnames[i] for i in val_idx) + "\n")
        epochs = self.recipe.train.retrain_on_val_epochs
        test_models = [best]
        if epochs:
            # Seed 003: the model now also learns fold k's clips. Only the test clips (and predict /
            # export) are scored by it (alone or mixed with the original, train.retrain_test); the OOF
            # above came from the model that never saw fold k.
            retrained = retrain_on_validation(best_path, self.compile_model,
                                              self.train_input(curated, labels, val_idx, stage), stage, epochs,
                                              fold_dir / RETRAINED, self.verbose, self.distribution)
            test_models = [best, retrained] if self.recipe.train.retrain_test == "mix" else [retrained]
        if test is not None:
            every = np.arange(len(test))
            np.save(fold_dir / "test.npy", np.mean([self.predict(m, test, every) for m in test_models], axis=0))
            # Its rows: the test cache may change between folds (a repaired clip is decoded on a later run).
            (fold_dir / "test_fnames.txt").write_text("".join(f"{fname}\n" for fname in test.fnames))
        state = json.loads((fold_dir / "state.json").read_text())
        summary = {"fold": k, "val_lwlrap": _lwlrap_if_defined(labels[val_idx], oof, f"fold {k} validation"),
                   "best_epoch": state["best_epoch"], "epochs": state["epochs_done"], "train_clips": len(train_rows),
                   "val_clips": len(val_idx), "noisy_train_clips": len(train_rows) - len(train_idx),
                   "seconds": round(time.time() - started, 1)}
        write_text_atomic(done, json.dumps(summary, indent=1))
        print(f"[{self.recipe.name}] fold {k}: val lwlrap {_number(summary['val_lwlrap'])} "
              f"(best epoch {summary['best_epoch']} of 0-{summary['epochs'] - 1}, {summary['train_clips']} train / "
              f"{summary['val_clips']} val clips, {summary['seconds']:.0f} s)", flush=True)
        return summary

    def folds(self, cache: WaveformCache, labels: np.ndarray, groups: list[str] | None = None) -> np.ndarray:
        """Fold id per cache row (clips of one group share a fold): made once per run, then read back so a
        resumed run keeps them."""
        path = self.run_dir / "folds.csv"
        if path.exists():
            table = load_folds(path).set_index("fname")
            if set(table.index) != set(cache.fnames):
                raise ValueError(f"{path}: folds were made for other clips than the cache holds; "
                                 "start a new run folder")
            return table.loc[list(cache.fnames), "fold"].to_numpy()
        cfg = self.recipe.folds
        folds = make_folds(labels, cfg.n_splits, cfg.seed, multilabel=self.multilabel, groups=groups)
        save_folds(path, cache.fnames, folds)
        return folds

    def noisy_clips(self) -> NoisyClips | None:
        """The noisy clips that join the fine-tune training folds (``train.noisy_in_finetune``), or None."""
        return open_noisy_clips(self.data, self.recipe.train.noisy_in_finetune, self.recipe.folds)

    # -- the whole member --------------------------------------------------------------------
    def run(self) -> MemberResult:
        with lock_run_folder(self.run_dir):
            result = self._run_locked()
        if not self.distribution.is_chief:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return result

    def _run_locked(self) -> MemberResult:
        wanted = self.recipe.train.folds_to_run or tuple(range(self.recipe.folds.n_splits))
        resumed = open_run_folder(self.run_dir, self.recipe)
        write_run_info(self.run_dir, {"resumed": resumed, "data": str(self.data.layout.root),
                                      "folds": [int(k) for k in wanted]})
        write_task(self.run_dir, self.data.layout)
        self._write_skipped()
        split = self.data.splits[self.data.train_split]
        test_split = self.data.splits.get("test")
        with split.open() as curated:
            labels = split.labels(curated)
            write_priors(self.run_dir, self.data.layout.classes, labels)
            groups = split.groups(curated)
            folds = self.folds(curated, labels, groups)
            pretrained = self.pretrain(curated, labels)
            test = test_split.open() if test_split is not None else None
            noisy = self.noisy_clips()
            try:
                for k in wanted:
                    self.finetune_fold(k, folds, curated, labels, test, pretrained, noisy)
                # Folds finished by earlier invocations (another --folds) count too.
                finished = [k for k in range(self.recipe.folds.n_splits)
                            if (self.run_dir / f"fold{k}" / "done.json").exists()]
                summaries = [json.loads((self.run_dir / f"fold{k}" / "done.json").read_text()) for k in finished]
                return self._collect(curated, labels, folds, finished, summaries, test, test_split, groups)
            finally:
                if test is not None:
                    test.close()
                if noisy is not None:
                    noisy.cache.close()

    def _write_skipped(self) -> None:
        """``skipped.csv``: the clips of every split that could not be decoded, with the reason."""
        rows = []
        for name, split in self.data.splits.items():
            listed = set(split.table.fnames)
            with split.open() as cache:
                rows += [(name, fname, reason) for fname, reason in cache.skipped if fname in listed]
        with atomic_path(self.run_dir / "skipped.csv") as tmp:
            pd.DataFrame(rows, columns=["split", "fname", "reason"]).to_csv(tmp, index=False)

    def _collect(self, curated, labels, folds, wanted, summaries, test, test_split, groups) -> MemberResult:
        oof = np.full(labels.shape, np.nan, np.float32)
        for k in wanted:
            oof[folds == k] = np.load(self.run_dir / f"fold{k}" / "oof.npy")
        covered = np.isin(folds, wanted)
        np.save(self.run_dir / "oof.npy", oof)
        np.save(self.run_dir / "oof_labels.npy", labels)  # so stacking never needs the data folder
        _write_scores_csv(self.run_dir / "oof.csv", curated.fnames, oof, self.classes, folds, groups)
        if labels[covered].any():
            per_class, _ = per_class_lwlrap(labels[covered], oof[covered])
        else:
            per_class = np.zeros(len(self.classes))
        metrics = {
            "member": self.recipe.name,
            "oof_lwlrap_per_fold": {str(s["fold"]): s["val_lwlrap"] for s in summaries},
            "per_class_lwlrap": dict(zip(self.classes, map(float, per_class))),
            "oof_clips": int(covered.sum()),
            "folds": [int(k) for k in wanted],
        }
        self._score(metrics, "oof", labels[covered], oof[covered])
        pretrain_state = self.run_dir / "pretrain" / "state.json"
        if pretrain_state.exists():
            metrics["pretrain_best_val_lwlrap"] = json.loads(pretrain_state.read_text())["best_score"]
        test_scores = None if test is None else self._collect_test(metrics, test, test_split.table, wanted)
        if self.recipe.train.calibration == "temperature" and covered.any():  # fit on OOF only; test.npy stays raw
            metrics["calibration"] = calibrate(oof[covered], labels[covered], self.multilabel)
            if test_scores is not None:
                np.save(self.run_dir / "test_calibrated.npy",
                        apply_temperature(test_scores, metrics["calibration"]["temperature"], self.multilabel))
        write_text_atomic(self.run_dir / "metrics.json", json.dumps(metrics, indent=1))
        self._plots(wanted, per_class)
        test_note = f", test lwlrap {metrics['test_lwlrap']:.4f}" if "test_lwlrap" in metrics else ""
        print(f"[{self.recipe.name}] OOF lwlrap {_number(metrics.get('oof_lwlrap'))} over {metrics['oof_clips']} "
              f"clips{test_note} -> {self.run_dir}", flush=True)
        return MemberResult(self.run_dir, oof, test_scores, metrics)

    def _collect_test(self, metrics: dict, test: WaveformCache, table, folds: list[int]) -> np.ndarray:
        """Test scores with one row per clip of the test table (sample_submission order): each clip's mean
        over the fold models that scored it; clips none could decode get the class priors, are named in a
        warning and listed in ``test_fallback.csv``. Scored against the truth (when known) on every row,
        as Kaggle would."""
        position = {fname: i for i, fname in enumerate(table.fnames)}
        sums = np.zeros((len(table.fnames), len(self.classes)), np.float64)
        counts = np.zeros(len(table.fnames), np.int64)
        for k in folds:
            fold_dir = self.run_dir / f"fold{k}"
            scores = np.load(fold_dir / "test.npy")
            names_file = fold_dir / "test_fnames.txt"
            names = names_file.read_text().splitlines() if names_file.exists() else list(test.fnames)
            if len(names) != len(scores):
                raise ValueError(f"{fold_dir / 'test.npy'}: {len(scores)} rows for {len(names)} test clips; delete "
                                 f"{fold_dir / 'done.json'} and rerun to score the test clips again")
            pairs = np.array([(position[name], i) for i, name in enumerate(names) if name in position],
                             np.int64).reshape(-1, 2)  # (table row, fold row)
            sums[pairs[:, 0]] += scores[pairs[:, 1]]
            counts[pairs[:, 0]] += 1
        priors = read_priors(self.run_dir, self.data.layout.classes)
        scores = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], priors).astype(np.float32)
        reasons = dict(test.skipped)
        fallback = [(fname, reasons.get(fname, "not scored by any fold model"))
                    for fname, count in zip(table.fnames, counts) if count == 0]
        np.save(self.run_dir / "test.npy", scores)
        _write_scores_csv(self.run_dir / "test.csv", table.fnames, scores, self.classes)
        write_fallback_csv(self.run_dir / FALLBACK_FILE, fallback)
        warn_fallback(f"{self.recipe.name} test.csv", fallback, self.run_dir / FALLBACK_FILE)
        metrics["test_fallback_clips"] = len(fallback)
        if table.has_labels:
            np.save(self.run_dir / "test_labels.npy", table.labels)
            self._score(metrics, "test", table.labels, scores)
        return scores

    def _score(self, metrics: dict, prefix: str, labels: np.ndarray, scores: np.ndarray) -> None:
        """Add ``<prefix>_lwlrap`` (and ``<prefix>_map3`` for single-label tasks) unless undefined."""
        value = _lwlrap_if_defined(labels, scores, prefix)
        if value is not None:
            metrics[f"{prefix}_lwlrap"] = value
            if not self.multilabel:
                metrics[f"{prefix}_map3"] = map_at_k(labels, scores, 3)

    def _plots(self, wanted, per_class: np.ndarray) -> None:
        plots = self.run_dir / "plots"
        plots.mkdir(exist_ok=True)
        histories = {"pretrain": self.run_dir / "pretrain" / "history.csv"}
        histories.update({f"fold{k}": self.run_dir / f"fold{k}" / "history.csv" for k in wanted})
        plot_learning_curves(histories, plots / "learning_curves.png")
        plot_per_class(self.classes, per_class, plots / "per_class_lwlrap.png",
                       f"{self.recipe.name}: OOF lwlrap per class")


def init_source(recipe: Recipe, run_dir: Path) -> Path | None:
    """The run folder ``train.init_from`` names (a relative one lies beside ``run_dir``), checked before
    any training: a missing one fails in one line naming the recipe and the folder."""
    if not recipe.train.init_from:
        return None
    source = Path(recipe.train.init_from)
    if not source.is_absolute():
        source = run_dir.parent / source
    if not source.is_dir():
        raise ConfigError(f"recipe {recipe.name!r}: train.init_from run folder {source} does not exist yet; "
                          f"train that member first (run.sh trains the recipes in the order given)")
    if recipe.train.init_from_stage == "pretrain":
        source_checkpoint(source, "pretrain")
    return source


def _lwlrap_if_defined(labels: np.ndarray, scores: np.ndarray, what: str) -> float | None:
    """lwlrap, or None with a warning when ``labels`` hold no positive label (the metric is undefined there)."""
    if labels.any():
        return lwlrap(labels, scores)
    log.warning("%s lwlrap is undefined: none of its %d clip(s) has a positive label; not scored", what, len(labels))
    return None


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _write_scores_csv(path: Path, fnames, scores: np.ndarray, classes: list[str],
                      folds: np.ndarray | None = None, groups: list[str] | None = None) -> None:
    table = pd.DataFrame(scores, columns=classes)
    table.insert(0, "fname", list(fnames))
    if folds is not None:
        table.insert(1, "fold", folds)
    if groups is not None:  # stacking keeps whole groups in its folds too
        table.insert(table.columns.get_loc("fname") + 1, "group", groups)
    table.to_csv(path, index=False, float_format="%.6f")


def train_member(recipe: Recipe, data: PreparedData, run_dir: str | Path, verbose: int = 1,
                 distribution: Distribution | None = None) -> MemberResult:
    """Train (or resume) one member end to end and write its run folder (``train.strategy`` picks the
    distribution unless one is given; create it before other TensorFlow work for multi-worker runs)."""
    return MemberTrainer(recipe, data, Path(run_dir), verbose, distribution).run()
