"""Train one ensemble member: noisy pretraining, then k-fold fine-tuning on the curated split.

Out-of-fold (OOF) predictions of a clip come only from the fold model that held it out; test
predictions are the mean over fold models. Each finished fold is recorded, so a rerun skips it.
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
from freesound_tf.config import Recipe
from freesound_tf.data.cache import WaveformCache
from freesound_tf.data.folds import load_folds, make_folds, save_folds
from freesound_tf.data.graph_pipeline import make_train_input
from freesound_tf.data.pipeline import TrainInput, eval_dataset
from freesound_tf.data.prepare import PreparedData
from freesound_tf.inference import model_inputs, predict_clips
from freesound_tf.losses import get_loss
from freesound_tf.metrics import lwlrap, map_at_k, per_class_lwlrap
from freesound_tf.models import build_model
from freesound_tf.training.adapt import adapt_model, adaptable_layers
from freesound_tf.training.distribute import Distribution, make_distribution
from freesound_tf.training.init_weights import initialise_from_run
from freesound_tf.training.plots import plot_learning_curves, plot_per_class
from freesound_tf.training.precision import dtype_policy, loss_scaled
from freesound_tf.training.retrain import RETRAINED, retrain_on_validation
from freesound_tf.training.run_folder import open_run_folder, write_run_info, write_task
from freesound_tf.training.stage import fit_stage

log = logging.getLogger(__name__)


@dataclass
class MemberResult:
    run_dir: Path
    oof: np.ndarray  # (n_train_clips, C); NaN rows for folds not run
    test: np.ndarray | None  # (n_test_clips, C) mean over fold models
    metrics: dict


class MemberTrainer:
    """Everything one member's training needs, shared by its stages and folds."""

    def __init__(self, recipe: Recipe, data: PreparedData, run_dir: Path, verbose: int = 1,
                 distribution: Distribution | None = None) -> None:
        self.recipe, self.data, self.verbose = recipe, data, verbose
        self.distribution = distribution or make_distribution(recipe.train.strategy)
        # Every worker runs the same steps; only the chief's go to the run folder, the others write
        # a scratch copy beside it (removed when the member finishes) and read their own on resume.
        self.run_dir = Path(run_dir)
        if not self.distribution.is_chief:
            self.run_dir = self.run_dir / f".worker{self.distribution.worker_index}"
        self.inputs = model_inputs(recipe)
        self.classes = list(data.layout.classes.names)
        self.multilabel = data.layout.multilabel
        # Seed 002's random batch lengths also need a model that takes any length.
        self.variable_length = (recipe.train.tta in ("full", "multi_length")
                                or bool(recipe.pipeline.random_length_percentiles))

    # -- building blocks -------------------------------------------------------------------
    def make_model(self) -> keras.Model:
        # Layers keep the policy they were built with (also through .keras), so it is set only here.
        with dtype_policy(self.recipe.train.precision):
            return build_model(self.recipe, len(self.classes), self.multilabel, self.variable_length)

    def compile_model(self, model: keras.Model, lr: float) -> None:
        train = self.recipe.train
        options = {"smoothing": train.label_smoothing} if train.loss == "bce_smooth" else {}
        if train.loss == "cce":
            options = {"label_smoothing": train.label_smoothing}
        optimizer = loss_scaled(keras.optimizers.Nadam(learning_rate=lr), train.precision)
        model.compile(optimizer=optimizer, loss=get_loss(train.loss, **options), jit_compile=train.jit_compile)

    def initialise(self, model: keras.Model, stage_name: str) -> keras.Model:
        """A freshly built model, started from ``train.init_from``'s same stage when the recipe says so."""
        if self.recipe.train.init_from:
            initialise_from_run(model, Path(self.recipe.train.init_from), stage_name)
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

    def train_input(self, cache: WaveformCache, labels: np.ndarray, indices: np.ndarray) -> TrainInput:
        return make_train_input(cache, labels, self.recipe.pipeline, self.recipe.audio.sample_rate, indices,
                                inputs=self.inputs, augment=self.recipe.augment)

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
                self.train_input(noisy, noisy_labels, noisy_split.rows(noisy)),
                lambda m: self.predict(m, curated, every), curated_labels,
                self.run_dir / "tensorboard" / "pretrain", self.verbose,
                predict_train=lambda m, rows: self.predict(m, noisy, rows), distribution=self.distribution)
        return best

    def finetune_fold(self, k: int, folds: np.ndarray, curated: WaveformCache, labels: np.ndarray,
                      test: WaveformCache | None, pretrained: Path | None) -> dict:
        """Stage 2 for fold ``k``: train on the other folds, score fold ``k`` and the test clips."""
        fold_dir = self.run_dir / f"fold{k}"
        done = fold_dir / "done.json"
        if done.exists():
            return json.loads(done.read_text())
        train_idx, val_idx = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        assert not set(train_idx) & set(val_idx)
        if pretrained:
            make = lambda: keras.models.load_model(pretrained, compile=False)  # noqa: E731
        else:
            make = lambda: self.adapt(self.initialise(self.make_model(), f"fold{k}"), curated, train_idx)  # noqa: E731
        started = time.time()
        best_path = fit_stage(
            make, self.compile_model, self.recipe.train.finetune, fold_dir,
            self.train_input(curated, labels, train_idx),
            lambda m: self.predict(m, curated, val_idx), labels[val_idx],
            self.run_dir / "tensorboard" / f"fold{k}", self.verbose,
            predict_train=lambda m, rows: self.predict(m, curated, rows), distribution=self.distribution)
        best = keras.models.load_model(best_path, compile=False)
        oof = self.predict(best, curated, val_idx)
        np.save(fold_dir / "oof.npy", oof)
        # The fnames each fold model trained on: the leak check and a human can verify OOF honesty.
        (fold_dir / "train_fnames.txt").write_text("\n".join(curated.fnames[i] for i in train_idx) + "\n")
        (fold_dir / "val_fnames.txt").write_text("\n".join(curated.fnames[i] for i in val_idx) + "\n")
        epochs = self.recipe.train.retrain_on_val_epochs
        if epochs:
            # Seed 003: the model now also learns fold k's clips. Only the test clips (and predict /
            # export) are scored by it; the OOF above came from the model that never saw fold k.
            best = retrain_on_validation(best_path, self.compile_model, self.train_input(curated, labels, val_idx),
                                         self.recipe.train.finetune, epochs, fold_dir / RETRAINED, self.verbose,
                                         self.distribution)
        if test is not None:
            np.save(fold_dir / "test.npy", self.predict(best, test, np.arange(len(test))))
        state = json.loads((fold_dir / "state.json").read_text())
        summary = {"fold": k, "val_lwlrap": lwlrap(labels[val_idx], oof), "best_epoch": state["best_epoch"],
                   "epochs": state["epochs_done"], "train_clips": len(train_idx), "val_clips": len(val_idx),
                   "seconds": round(time.time() - started, 1)}
        done.write_text(json.dumps(summary, indent=1))
        print(f"[{self.recipe.name}] fold {k}: val lwlrap {summary['val_lwlrap']:.4f} "
              f"(best epoch {summary['best_epoch']}/{summary['epochs']}, {summary['train_clips']} train / "
              f"{summary['val_clips']} val clips, {summary['seconds']:.0f} s)", flush=True)
        return summary

    def folds(self, cache: WaveformCache, labels: np.ndarray) -> np.ndarray:
        """Fold id per cache row: made once per run, then read back so a resumed run keeps them."""
        path = self.run_dir / "folds.csv"
        if path.exists():
            table = load_folds(path).set_index("fname")
            if set(table.index) != set(cache.fnames):
                raise ValueError(f"{path}: folds were made for other clips than the cache holds; "
                                 "start a new run folder")
            return table.loc[list(cache.fnames), "fold"].to_numpy()
        cfg = self.recipe.folds
        folds = make_folds(labels, cfg.n_splits, cfg.seed, multilabel=self.multilabel)
        save_folds(path, cache.fnames, folds)
        return folds

    # -- the whole member --------------------------------------------------------------------
    def run(self) -> MemberResult:
        resumed = open_run_folder(self.run_dir, self.recipe)
        write_run_info(self.run_dir, {"resumed": resumed, "data": str(self.data.layout.root)})
        write_task(self.run_dir, self.data.layout)
        split = self.data.splits[self.data.train_split]
        test_split = self.data.splits.get("test")
        with split.open() as curated:
            labels = split.labels(curated)
            folds = self.folds(curated, labels)
            pretrained = self.pretrain(curated, labels)
            wanted = self.recipe.train.folds_to_run or tuple(range(self.recipe.folds.n_splits))
            test = test_split.open() if test_split is not None else None
            try:
                summaries = [self.finetune_fold(k, folds, curated, labels, test, pretrained) for k in wanted]
                result = self._collect(curated, labels, folds, wanted, summaries, test, test_split)
            finally:
                if test is not None:
                    test.close()
        if not self.distribution.is_chief:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return result

    def _collect(self, curated, labels, folds, wanted, summaries, test, test_split) -> MemberResult:
        oof = np.full(labels.shape, np.nan, np.float32)
        for k in wanted:
            oof[folds == k] = np.load(self.run_dir / f"fold{k}" / "oof.npy")
        covered = np.isin(folds, wanted)
        np.save(self.run_dir / "oof.npy", oof)
        np.save(self.run_dir / "oof_labels.npy", labels)  # so stacking never needs the data folder
        _write_scores_csv(self.run_dir / "oof.csv", curated.fnames, oof, self.classes, folds)
        per_class, weights = per_class_lwlrap(labels[covered], oof[covered])
        metrics = {
            "member": self.recipe.name,
            "oof_lwlrap": lwlrap(labels[covered], oof[covered]),
            "oof_lwlrap_per_fold": {str(s["fold"]): s["val_lwlrap"] for s in summaries},
            "per_class_lwlrap": dict(zip(self.classes, map(float, per_class))),
            "oof_clips": int(covered.sum()),
            "folds": [int(k) for k in wanted],
        }
        pretrain_state = self.run_dir / "pretrain" / "state.json"
        if pretrain_state.exists():
            metrics["pretrain_best_val_lwlrap"] = json.loads(pretrain_state.read_text())["best_score"]
        if not self.multilabel:
            metrics["oof_map3"] = map_at_k(labels[covered], oof[covered], 3)
        test_scores = None
        if test is not None:
            test_scores = np.mean([np.load(self.run_dir / f"fold{k}" / "test.npy") for k in wanted], axis=0)
            np.save(self.run_dir / "test.npy", test_scores)
            _write_scores_csv(self.run_dir / "test.csv", test.fnames, test_scores, self.classes)
            if test_split.table.has_labels:
                test_labels = test_split.labels(test)
                np.save(self.run_dir / "test_labels.npy", test_labels)
                metrics["test_lwlrap"] = lwlrap(test_labels, test_scores)
                if not self.multilabel:
                    metrics["test_map3"] = map_at_k(test_labels, test_scores, 3)
        if self.recipe.train.calibration == "temperature":  # fit on OOF only; test.npy stays raw
            metrics["calibration"] = calibrate(oof[covered], labels[covered], self.multilabel)
            if test_scores is not None:
                np.save(self.run_dir / "test_calibrated.npy",
                        apply_temperature(test_scores, metrics["calibration"]["temperature"], self.multilabel))
        (self.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
        self._plots(wanted, per_class)
        test_note = f", test lwlrap {metrics['test_lwlrap']:.4f}" if "test_lwlrap" in metrics else ""
        print(f"[{self.recipe.name}] OOF lwlrap {metrics['oof_lwlrap']:.4f} over {metrics['oof_clips']} clips"
              f"{test_note} -> {self.run_dir}", flush=True)
        return MemberResult(self.run_dir, oof, test_scores, metrics)

    def _plots(self, wanted, per_class: np.ndarray) -> None:
        plots = self.run_dir / "plots"
        plots.mkdir(exist_ok=True)
        histories = {"pretrain": self.run_dir / "pretrain" / "history.csv"}
        histories.update({f"fold{k}": self.run_dir / f"fold{k}" / "history.csv" for k in wanted})
        plot_learning_curves(histories, plots / "learning_curves.png")
        plot_per_class(self.classes, per_class, plots / "per_class_lwlrap.png",
                       f"{self.recipe.name}: OOF lwlrap per class")


def _write_scores_csv(path: Path, fnames, scores: np.ndarray, classes: list[str],
                      folds: np.ndarray | None = None) -> None:
    table = pd.DataFrame(scores, columns=classes)
    table.insert(0, "fname", list(fnames))
    if folds is not None:
        table.insert(1, "fold", folds)
    table.to_csv(path, index=False, float_format="%.6f")


def train_member(recipe: Recipe, data: PreparedData, run_dir: str | Path, verbose: int = 1,
                 distribution: Distribution | None = None) -> MemberResult:
    """Train (or resume) one member end to end and write its run folder (``train.strategy`` picks the
    distribution unless one is given; create it before other TensorFlow work for multi-worker runs)."""
    return MemberTrainer(recipe, data, Path(run_dir), verbose, distribution).run()
