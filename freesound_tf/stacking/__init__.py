"""Ensemble stacking (seed 004, with honest OOF): baseline blends and a per-class locally-connected stacker.

``run_stacking(recipe, run_dirs, out_dir)`` reads finished member run folders, aligns their OOF
and test scores by fname, scores the members and four blends (mean, weighted mean, geometric
mean, rank mean), trains the stacker k-fold on the OOF matrix and writes into ``out_dir``:

- ``table.json``: OOF (and, with test truth, test) lwlrap of every member, blend and the stacker;
- ``submission.csv``: stacked test scores in the Kaggle format of the task;
- ``oof_stacked.npy`` / ``test_stacked.npy``: stacker scores, rows in the first member's
  ``oof.csv`` (clips every member scored) / ``test.csv`` order;
- ``stacker_folds.csv``: the stacker fold of each OOF clip (fold model k never trained on fold k);
- ``stacker_fold{k}.keras``: the fold models (import ``freesound_tf.stacking`` before loading);
- ``stack.json``, everything needed to serve the stack::

      {"format": 1, "name": "lc1d",
       "members": [{"name": "v1mix", "run_dir": "/abs/run/v1mix", "weight": 2.1}, ...],
       "classes": ["Accelerating_and_revving_and_vroom", ...], "multilabel": true,
       "input": "member_scores", "input_shape": [classes, members],
       "fold_models": ["stacker_fold0.keras", ...]}

  Each fold model maps ``member_scores`` float32 ``(batch, classes, members)`` — the members'
  clip scores (each the mean over its fold models) stacked on the last axis in ``members``
  order, class columns in ``classes`` order — to ``(batch, classes)``; the stacked score is the
  mean over ``fold_models`` (paths relative to ``stack.json``). The weighted mean over members is
  computed inside the model, so a server only stacks member scores.
"""
from freesound_tf.stacking.blends import (
    blends, geometric_mean_blend, mean_blend, rank_mean_blend, weighted_mean_blend,
)
from freesound_tf.stacking.layers import AppendWeightedMean, LocallyConnected1D, SelectRow, ShiftedTanh
from freesound_tf.stacking.members import MemberScores, load_members
from freesound_tf.stacking.model import build_stacker
from freesound_tf.stacking.run import format_table, run_stacking
from freesound_tf.stacking.train import StackerFit, fit_stacker

__all__ = [
    "AppendWeightedMean", "LocallyConnected1D", "MemberScores", "SelectRow", "ShiftedTanh", "StackerFit", "blends",
    "build_stacker", "fit_stacker", "format_table", "geometric_mean_blend", "load_members", "mean_blend",
    "rank_mean_blend", "run_stacking", "weighted_mean_blend",
]
