"""``run_stacking``: members -> baseline blends + k-fold stacker -> table, submission and ``stack.json``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from freesound_tf.config import StackerConfig, load_stacker_recipe
from freesound_tf.data.folds import save_folds
from freesound_tf.fallback import FALLBACK_FILE, read_fallback_csv, warn_fallback, write_fallback_csv
from freesound_tf.inference import write_submission
from freesound_tf.metrics import lwlrap, map_at_k
from freesound_tf.stacking.blends import blends
from freesound_tf.stacking.choice import EnsembleChoice, choose_ensemble, fixed_candidates, stacker_key
from freesound_tf.stacking.members import MemberScores, load_members
from freesound_tf.stacking.train import StackerFit, fit_stacker

STACK_FORMAT = 1


def run_stacking(recipe_path: str | Path, run_dirs: list[Path], out_dir: Path, verbose: int = 0) -> dict:
    """Blend and stack the member runs ``run_dirs`` as the stacker recipe says; write everything into
    ``out_dir`` (see the package docstring) and return the table that is also in ``table.json``."""
    config = load_stacker_recipe(recipe_path)
    members = load_members([Path(r) for r in run_dirs])
    weights = [config.weight(name) for name in members.names]
    unused = sorted(set(config.weights) - set(members.names))
    if unused:
        print(f"note: {recipe_path} weights {', '.join(unused)} match no member ({', '.join(members.names)})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The network wants (clips, classes, members); MemberScores keeps members first.
    fit = fit_stacker(members.oof.transpose(1, 2, 0), members.labels, members.test.transpose(1, 2, 0), weights,
                      config, out_dir, members.multilabel, verbose, members.groups)
    np.save(out_dir / "oof_stacked.npy", fit.oof)
    np.save(out_dir / "test_stacked.npy", fit.test)
    save_folds(out_dir / "stacker_folds.csv", members.fnames, fit.folds)
    choice = choose_ensemble(members.oof, members.labels, members.names, weights, fit.oof, config, members.multilabel,
                             members.groups)
    submitted = np.array(fit.test if choice.kind == "stacker"
                         else fixed_candidates(members.names, weights)[choice.name][1](members.test), np.float32)
    fallback = _fallback_rows(members)
    if fallback:  # the members' mean, not a blend's answer to priors: the class priors if no member decoded it
        rows = np.isin(members.test_fnames, [fname for fname, _ in fallback])
        submitted[rows] = members.test[:, rows].mean(axis=0)
    write_submission(out_dir / "submission.csv", members.test_fnames, submitted, members.classes.names,
                     members.multilabel)
    write_fallback_csv(out_dir / FALLBACK_FILE, fallback)
    warn_fallback(f"{out_dir / 'submission.csv'}", fallback, out_dir / FALLBACK_FILE)
    (out_dir / "stack.json").write_text(json.dumps(_stack_description(config, members, weights, fit, choice),
                                                   indent=1))
    table = _table(recipe_path, config, members, weights, fit, choice)
    (out_dir / "table.json").write_text(json.dumps(table, indent=1))
    print(format_table(table))
    print(f"submission, stacker models and table -> {out_dir}")
    return table


def _fallback_rows(members: MemberScores) -> list[tuple[str, str]]:
    """Test clips some member could not decode (its ``test_fallback.csv``), in test order."""
    reasons: dict[str, str] = {}
    for run_dir in members.run_dirs:
        reasons.update(read_fallback_csv(run_dir / FALLBACK_FILE))
    return [(fname, reasons[fname]) for fname in members.test_fnames if fname in reasons]


def _stack_description(config: StackerConfig, members: MemberScores, weights: list[float], fit: StackerFit,
                       choice: EnsembleChoice) -> dict:
    return {
        "format": STACK_FORMAT,
        "name": config.name,
        "members": [{"name": n, "run_dir": str(d.resolve()), "weight": w}
                    for n, d, w in zip(members.names, members.run_dirs, weights)],
        "classes": list(members.classes.names),
        "multilabel": members.multilabel,
        "input": "member_scores",
        "input_shape": [len(members.classes), len(members.names)],
        "fold_models": [p.name for p in fit.model_paths],
        "choice": {"name": choice.name, "kind": choice.kind},
    }


def _scores(labels: np.ndarray | None, scores: np.ndarray, multilabel: bool, prefix: str) -> dict:
    if labels is None or not labels.any():  # no truth, or no positive label: lwlrap is undefined
        return {}
    out = {f"{prefix}_lwlrap": lwlrap(labels, scores)}
    if not multilabel:
        out[f"{prefix}_map3"] = map_at_k(labels, scores, 3)
    return out


def _table(recipe_path, config: StackerConfig, members: MemberScores, weights: list[float], fit: StackerFit,
           choice: EnsembleChoice) -> dict:
    entries = [(name, "member", members.oof[m], members.test[m]) for m, name in enumerate(members.names)]
    entries += [(name, "blend", blend(members.oof), blend(members.test)) for name, blend in blends(weights).items()]
    entries.append((stacker_key(config, fixed_candidates(members.names, weights)), "stacker", fit.oof, fit.test))
    rows = [{"name": name, "kind": kind, **_scores(members.labels, oof, members.multilabel, "oof"),
             **_scores(members.test_labels, test, members.multilabel, "test")} for name, kind, oof, test in entries]
    return {"stacker": config.name, "recipe": str(recipe_path), "members": list(members.names),
            "weights": dict(zip(members.names, weights)), "oof_clips": len(members.fnames),
            "oof_clips_dropped": members.dropped, "test_clips": len(members.test_fnames), "rows": rows,
            "stacker_folds": fit.summaries, "choice": choice.to_json()}


def format_table(table: dict) -> str:
    """The table as aligned text: one line per member, blend and the stacker."""
    columns = [c for c in ("oof_lwlrap", "test_lwlrap", "oof_map3", "test_map3") if c in table["rows"][0]]
    width = max(len(r["name"]) for r in table["rows"]) + 2
    dropped = f" ({table['oof_clips_dropped']} without every member's OOF left out)" if table["oof_clips_dropped"] else ""
    lines = [f"stacking {table['stacker']}: {len(table['members'])} members, {table['oof_clips']} OOF clips{dropped}, "
             f"{table['test_clips']} test clips",
             f"{'':{width}s}{'kind':9s}" + "".join(f"{c:>13s}" for c in columns)]
    chosen = table["choice"]["name"]
    for row in table["rows"]:
        mark = "  <- submitted" if row["name"] == chosen else ""
        lines.append(f"{row['name']:{width}s}{row['kind']:9s}"
                     + "".join(f"{row[c]:13.4f}" if c in row else f"{'-':>13s}" for c in columns) + mark)
    lines.append(f"submitted: {table['choice']['reason']}")
    return "\n".join(lines)
